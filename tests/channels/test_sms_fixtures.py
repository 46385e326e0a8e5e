"""Each Twilio Programmable Messaging webhook body parses into the right entry: one fixture per event.

The fixtures are form bodies exactly as Twilio posts them; each test signs its request with the
official SDK's RequestValidator and hands it to the SMS adapters (verify, then parse).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.etree import ElementTree

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from channels.base import InvalidPayload, WebhookRejected
from channels.inbound import ByCustomer, InboundEntry, Parsed, WebhookRequest
from channels.sms_twilio import TwilioMessageStatusWebhook, TwilioMessageWebhook
from conversations.keywords import Keyword, classify
from conversations.models import (
    Channel,
    Identifier,
    IdentifierKind,
    InboundMessage,
    Media,
    MessageStatus,
    StatusUpdate,
)
from conversations.sms_segments import segment_count
from tests.support.fixtures import FIXTURES, fixture_form

TOKEN = "sms-fixtures-auth-token"
PUBLIC = "https://threadline.example.com"
NOW = 1_764_600_000.0
CUSTOMER = Identifier(IdentifierKind.PHONE, "+14155550142")
OUR_NUMBER = "+15005550006"
CALLBACK = {"mid": "msg_01SMSFIXTURE", "cid": "cus_3_01SMSFIXTURE"}

# Every fixture file is an event we handle; a new file must be declared here.
EVENTS = {
    "inbound_text": "message",
    "inbound_mms": "message",
    "inbound_unicode": "message",
    "inbound_stop": "message",
    "status_queued": "status",
    "status_sent": "status",
    "status_delivered": "status",
    "status_undelivered_30003": "status",
    "status_failed_30008": "status",
}


def request(url: str, form: MultiDict[str], signature: str | None = None) -> WebhookRequest:
    """The request Twilio makes: signed over the URL and the form (by the official SDK)."""
    signature = signature or RequestValidator(TOKEN).compute_signature(url, form)
    query = dict(parse_qsl(urlsplit(url).query))
    return WebhookRequest("POST", url, query, {"X-Twilio-Signature": signature}, form=form)


def receive_message(name: str) -> Parsed:
    url = f"{PUBLIC}/webhooks/twilio/sms"
    return TwilioMessageWebhook(TOKEN).receive(request(url, fixture_form("sms", name)), NOW)


def receive_status(name: str, callback: dict[str, str] = CALLBACK) -> Parsed:
    url = f"{PUBLIC}/webhooks/twilio/sms/status?{urlencode(callback)}"
    return TwilioMessageStatusWebhook(TOKEN).receive(request(url, fixture_form("sms", name)), NOW)


def assert_empty_twiml(parsed: Parsed) -> None:
    """Twilio is answered with an empty TwiML document: nothing to send back."""
    assert parsed.reply is not None and parsed.reply.content_type == "text/xml"
    document = ElementTree.fromstring(parsed.reply.body)
    assert (document.tag, list(document)) == ("Response", [])


def check_message(name: str, body: str, **expected: object) -> InboundMessage:
    parsed = receive_message(name)
    assert parsed.skipped == []
    assert_empty_twiml(parsed)
    (entry,) = parsed.entries
    message = entry.entry
    assert isinstance(message, InboundMessage)
    form = fixture_form("sms", name)
    assert (message.channel, message.provider, message.sender) == (Channel.SMS, "twilio", CUSTOMER)
    assert (message.recipient, message.received_at) == (OUR_NUMBER, NOW)
    assert message.provider_message_id == form["MessageSid"]
    assert entry == InboundEntry(message, f"twilio:msg:{form['MessageSid']}", CUSTOMER)
    assert message.body == body
    assert segment_count(body) == int(form["NumSegments"])  # we count segments as Twilio did
    for field, value in expected.items():
        assert getattr(message, field) == value, field
    return message


def check_status(name: str, status: MessageStatus, error_code: str = "") -> None:
    parsed = receive_status(name)
    assert parsed.skipped == []
    assert_empty_twiml(parsed)
    (entry,) = parsed.entries
    update = entry.entry
    assert isinstance(update, StatusUpdate)
    form = fixture_form("sms", name)
    assert (update.channel, update.provider) == (Channel.SMS, "twilio")
    assert update.provider_message_id == form["MessageSid"]
    assert (update.message_id, update.customer_id) == (CALLBACK["mid"], CALLBACK["cid"])
    assert (update.status, update.provider_status, update.at) == (status, form["MessageStatus"], NOW)
    assert update.error_code == error_code
    dedupe = f"twilio:status:{form['MessageSid']}:{form['MessageStatus']}"
    assert entry == InboundEntry(update, dedupe, ByCustomer(CALLBACK["cid"]))


def test_every_fixture_is_a_declared_event() -> None:
    assert sorted(path.stem for path in (FIXTURES / "sms").iterdir()) == sorted(EVENTS)
    assert {path.suffix for path in (FIXTURES / "sms").iterdir()} == {".form"}


def test_inbound_text() -> None:
    check_message("inbound_text", "Hi, is my order on its way? It was due Tuesday.", media=())


def test_inbound_mms_keeps_every_media_in_order() -> None:
    base = "https://api.twilio.com/2010-04-01/Accounts/AC3f6b1e0c9d8a7b2c4e5f60718293a4b5/Messages"
    mms = f"{base}/MM5d0a2c4e6f8b1d3a5c7e9f0b2d4a6c8e/Media"
    message = check_message(
        "inbound_mms",
        "Here is the damaged box and the label",
        media=(
            Media(url=f"{mms}/ME0c2e4a6b8d1f3a5c7e9b0d2f4a6c8e1b", content_type="image/jpeg"),
            Media(url=f"{mms}/ME7e9b1d3f5a0c2e4b6d8f1a3c5e7b9d0f", content_type="image/png"),
        ),
    )
    assert message.provider_message_id.startswith("MM")  # Twilio names MMS with MM sids


def test_inbound_unicode_and_emoji_survive_the_form_encoding() -> None:
    # "+" and "&" are literal characters here, "+" between words a space: the form encoding's job.
    check_message(
        "inbound_unicode",
        "Ça coûte 12 € + livraison ? Merci 🙏 & à bientôt 😊 Je serai chez moi après 18 h, sonnez deux fois.",
    )


def test_inbound_stop_is_the_opt_out_keyword() -> None:
    message = check_message("inbound_stop", "Stop")
    assert fixture_form("sms", "inbound_stop")["OptOutType"] == "STOP"  # Twilio's own verdict
    assert classify(message.body) == (Keyword.OPT_OUT, "STOP")


def test_status_queued() -> None:
    check_status("status_queued", MessageStatus.QUEUED)


def test_status_sent() -> None:
    check_status("status_sent", MessageStatus.SENT)


def test_status_delivered() -> None:
    check_status("status_delivered", MessageStatus.DELIVERED)


def test_status_undelivered_30003() -> None:
    check_status("status_undelivered_30003", MessageStatus.UNDELIVERED, "30003")


def test_status_failed_30008() -> None:
    check_status("status_failed_30008", MessageStatus.FAILED, "30008")


@pytest.mark.parametrize("name", [name for name, kind in EVENTS.items() if kind == "message"])
def test_a_tampered_inbound_body_is_rejected(name: str) -> None:
    url = f"{PUBLIC}/webhooks/twilio/sms"
    form = fixture_form("sms", name)
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    form["Body"] = form["Body"] + "!"
    with pytest.raises(WebhookRejected) as rejected:
        TwilioMessageWebhook(TOKEN).receive(request(url, form, signature), NOW)
    assert rejected.value.code == "signature_invalid"


@pytest.mark.parametrize("name", [name for name, kind in EVENTS.items() if kind == "status"])
def test_a_status_callback_without_our_ids_is_refused(name: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        receive_status(name, {"mid": CALLBACK["mid"]})
    assert (refused.value.code, refused.value.field) == ("invalid_callback_url", "cid")
