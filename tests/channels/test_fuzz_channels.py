"""Hypothesis over the WhatsApp, RBM, email and voice webhook parsers and their signature checks:
only the errors the routes map to 4xx (InvalidPayload, msgspec's decode errors) ever escape; and
through each adapter's ``receive``, signed bodies with deeply nested fields and odd query values."""

from __future__ import annotations

import base64
import string
from pathlib import Path
from urllib.parse import urlencode

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from channels import email_inbound, rcs_rbm, twilio_signature, voice_twilio, whatsapp_cloud
from channels.base import InvalidPayload, WebhookRejected
from channels.inbound import InboundAdapter, WebhookRequest
from conversations.codec import decode_ingest, encode
from conversations.config import VoiceConfig
from tests.support.odd_values import nesting_depths, odd_numbers, with_nested_field
from tests.support.shaped import encoded, mutations_of, shaped_like

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _mutated(channel: str, skip: tuple[str, ...] = ()) -> st.SearchStrategy:
    """Real captured payloads of ``channel``, mutated."""
    documents = [
        msgspec.json.decode(path.read_bytes())
        for path in sorted((FIXTURES / channel).glob("*.json"))
        if not path.name.startswith(skip)
    ]
    return st.one_of([mutations_of(document) for document in documents])


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)

phones = st.one_of(
    st.from_regex(r"\+?1[2-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"[0-9]{6,15}", fullmatch=True),
    st.text(max_size=16),
)
timestamps = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.integers(0, 2**33),
    st.text(max_size=25),
    st.just("2024-05-01T10:00:00Z"),
)
hints = {
    "object": st.sampled_from(["whatsapp_business_account", "page"]),
    "message_id": st.text(min_size=1, max_size=12),
    "from_": phones,
    "wa_id": phones,
    "recipient_id": phones,
    "sender_phone_number": phones,
    "timestamp": timestamps,
    "send_time": timestamps,
}


def _stored_round_trip(entry: object) -> None:
    """What a parser accepts must be storable and read back unchanged."""
    assert decode_ingest(encode(entry)) == entry


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        encoded(shaped_like(whatsapp_cloud.WhatsAppWebhookBody, hints)),
        encoded(_mutated("whatsapp")),
        encoded(_mutated("whatsapp")),
    )
)
def test_whatsapp_webhook_parsing(raw: bytes) -> None:
    try:
        body = whatsapp_cloud.decode_webhook(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return  # the route answers 400
    try:
        parsed = whatsapp_cloud.parse_webhook(body, 1_700_000_000.0)
    except InvalidPayload:
        return
    for item in (*parsed.messages, *parsed.statuses):
        _stored_round_trip(item)


@FUZZ
@given(
    secret=st.text(max_size=20),
    raw=st.binary(max_size=100),
    header=st.one_of(
        st.none(),
        st.text(max_size=80),
        st.text(alphabet="0123456789abcdef", max_size=64).map("sha256=".__add__),
    ),
)
def test_whatsapp_signature_check_never_raises(secret: str, raw: bytes, header: str | None) -> None:
    assert whatsapp_cloud.is_valid_signature(secret, raw, header) in (True, False)


rbm_events = st.one_of(
    encoded(shaped_like(rcs_rbm.RbmEvent, hints)),
    encoded(_mutated("rcs", skip=("agent_", "capabilities", "error_", "verification"))),
    encoded(_mutated("rcs", skip=("agent_", "capabilities", "error_", "verification"))),
)
rbm_bodies = st.one_of(
    st.binary(max_size=200),
    encoded(shaped_like(rcs_rbm.RbmWebhookBody)),
    rbm_events.map(
        lambda data: msgspec.json.encode(
            {"message": {"data": base64.b64encode(data).decode()}, "subscription": "s"}
        )
    ),
)


@FUZZ
@given(raw=rbm_bodies)
def test_rbm_webhook_parsing(raw: bytes) -> None:
    try:
        envelope = rcs_rbm.decode_webhook(raw)
        if envelope.is_verification:
            return
        data = rcs_rbm.event_data(envelope)
        entry = rcs_rbm.parse_event(data, 1_700_000_000.0)
    except InvalidPayload:
        return
    if entry is not None:
        _stored_round_trip(entry)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), rbm_events))
def test_rbm_event_parsing(data: bytes) -> None:
    try:
        entry = rcs_rbm.parse_event(data, 1_700_000_000.0)
    except InvalidPayload:
        return
    if entry is not None:
        _stored_round_trip(entry)


@FUZZ
@given(
    token=st.text(max_size=20),
    data=st.binary(max_size=100),
    signature=st.one_of(st.none(), st.text(max_size=90)),
)
def test_rbm_signature_checks_never_raise(token: str, data: bytes, signature: str | None) -> None:
    assert rcs_rbm.is_valid_signature(token, data, signature) in (True, False)
    assert rcs_rbm.is_valid_client_token(token, signature or "") in (True, False)


addresses = st.one_of(
    st.emails(),
    st.builds(lambda name, email: f'"{name}" <{email}>', st.text(max_size=10), st.emails()),
    st.text(max_size=40),
)
email_forms = st.fixed_dictionaries(
    {},
    optional={
        "from": addresses,
        "to": addresses,
        "subject": st.text(max_size=40),
        "text": st.text(max_size=80),
        "html": st.text(max_size=80),
        "headers": st.text(max_size=120),
        "envelope": st.one_of(
            st.text(max_size=60), st.builds(lambda a: msgspec.json.encode({"from": a}).decode(), addresses)
        ),
        "charsets": st.text(max_size=40),
    },
)


@FUZZ
@given(form=email_forms)
def test_email_parsing(form: dict[str, str]) -> None:
    try:
        entry = email_inbound.parse_inbound_email(form, 1_700_000_000.0)
    except InvalidPayload:
        return
    _stored_round_trip(entry)


@FUZZ
@given(raw=st.dictionaries(st.sampled_from(email_inbound.TEXT_FIELDS), st.binary(max_size=60), max_size=6))
def test_email_field_decoding_never_raises(raw: dict[str, bytes]) -> None:
    assert isinstance(email_inbound.decode_fields(raw), dict)


voice_fields = ["CallSid", "From", "To", "CallStatus", "SpeechResult", "Confidence", "Digits", "Direction"]
voice_forms = st.dictionaries(
    st.one_of(st.sampled_from(voice_fields), st.text(max_size=8)),
    st.one_of(
        phones, st.text(max_size=30), st.sampled_from(["completed", "busy", "no-answer", "0.93", "12#"])
    ),
    max_size=9,
)


@FUZZ
@given(form=voice_forms, seq=st.integers(1, 50), ids=st.text(alphabet=string.printable, max_size=12))
def test_voice_parsing(form: dict[str, str], seq: int, ids: str) -> None:
    for parse in (
        lambda: voice_twilio.parse_call(form),
        lambda: voice_twilio.parse_gather(form, seq, 1.0),
        lambda: voice_twilio.parse_call_status(form, ids, ids, 1.0),
    ):
        try:
            result = parse()
        except InvalidPayload:
            continue
        if result is not None and not isinstance(result, voice_twilio.CallInfo):
            _stored_round_trip(result)


# --- through each adapter's one entry point, as the gateway calls it ------------------------

SECRET = "fuzz-secret"
rbm_adapter = rcs_rbm.RbmWebhook(SECRET)
whatsapp_adapter = whatsapp_cloud.WhatsAppWebhook(SECRET, "verify")
gather_adapter = voice_twilio.TwilioGatherWebhook(SECRET, VoiceConfig(), "/webhooks/twilio/voice/gather")
json_bodies = st.one_of(
    rbm_bodies,
    encoded(_mutated("whatsapp")),
    encoded(shaped_like(whatsapp_cloud.WhatsAppWebhookBody, hints)),
    st.just(b'{"clientToken": "fuzz-secret", "secret": "s"}'),
)


def _receive(adapter: InboundAdapter, request: WebhookRequest) -> None:
    """What the gateway maps to 400/403 may escape ``receive``; nothing else may."""
    try:
        parsed = adapter.receive(request, 1_700_000_000.0)
    except (InvalidPayload, WebhookRejected):
        return
    for item in parsed.entries:
        _stored_round_trip(item.entry)


@FUZZ
@given(body=json_bodies, depth=st.none() | nesting_depths, rbm=st.booleans())
def test_signed_json_webhooks_with_nested_fields(body: bytes, depth: int | None, rbm: bool) -> None:
    if depth is not None and body.lstrip().startswith(b"{"):
        body = with_nested_field(body, depth)
    if rbm:
        _receive(rbm_adapter, WebhookRequest("POST", "https://x/webhooks/rcs", {}, {}, body=body))
    else:
        signature = whatsapp_cloud.compute_signature(SECRET, body)
        headers = {"X-Hub-Signature-256": signature}
        _receive(
            whatsapp_adapter, WebhookRequest("POST", "https://x/webhooks/whatsapp", {}, headers, body=body)
        )


@FUZZ
@given(seq=odd_numbers, form=voice_forms)
def test_signed_gathers_with_odd_sequence_numbers(seq: str, form: dict[str, str]) -> None:
    url = "https://x/webhooks/twilio/voice/gather?" + urlencode({"seq": seq})
    headers = {"X-Twilio-Signature": twilio_signature.compute_signature(SECRET, url, form.items())}
    request = WebhookRequest("POST", url, {"seq": seq}, headers, form=MultiDict(form))
    _receive(gather_adapter, request)
