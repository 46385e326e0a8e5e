"""Hypothesis over every webhook parser, the Twilio signature and the API bodies: only our typed
errors (InvalidPayload, ApiError) ever escape, and the running gateway never answers 5xx, also to
odd query values (superscript digits, inf, nan, refused stream ids) and deeply nested webhook JSON."""

from __future__ import annotations

import string
import uuid
from urllib.parse import urlsplit

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.base import InvalidPayload
from channels.sms_twilio import parse_inbound, parse_status
from channels.twilio_signature import (
    algorithm_from_settings,
    compute_signature,
    is_valid_signature,
    url_variants,
)
from conversations.codec import decode_ingest, encode
from gateway.errors import MAX_JSON_DEPTH, ApiError, decode_json_body, json_depth
from gateway.idempotency import request_fingerprint
from gateway.routes.messages import SendMessage
from tests.support.odd_values import nesting_depths, odd_query_values, with_nested_field
from tests.support.stack import Stack, twilio_inbound_form, unique_phone

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
LIVE = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)

TWILIO_FIELDS = [
    "MessageSid",
    "SmsMessageSid",
    "SmsSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "MediaUrl1",
    "ProfileName",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
]
phones = st.one_of(
    st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True),
    st.from_regex(r"whatsapp:\+44[0-9]{10}", fullmatch=True),
    st.text(max_size=30),
)
values = st.one_of(
    st.text(max_size=60),
    st.integers(-5, 20).map(str),
    phones,
    st.sampled_from(["delivered", "failed", "sent", "queued", "SENT", " read ", ""]),
)
forms = st.dictionaries(st.one_of(st.sampled_from(TWILIO_FIELDS), st.text(max_size=12)), values, max_size=14)


@FUZZ
@given(form=forms, at=st.floats(allow_nan=False, allow_infinity=False))
def test_parse_inbound_raises_only_invalid_payload(form: dict[str, str], at: float) -> None:
    try:
        entry = parse_inbound(form, at)
    except InvalidPayload as exc:
        assert exc.field is None or isinstance(exc.field, str)
        return
    assert entry.provider_message_id and entry.sender.value.startswith("+")
    assert decode_ingest(encode(entry)) == entry  # what we accept, we can store and read back


@FUZZ
@given(form=forms, message_id=st.text(max_size=20), customer_id=st.text(max_size=20))
def test_parse_status_raises_only_invalid_payload(
    form: dict[str, str], message_id: str, customer_id: str
) -> None:
    try:
        entry = parse_status(form, message_id, customer_id, 1.0)
    except InvalidPayload:
        return
    assert entry.provider_message_id and entry.provider_status
    assert decode_ingest(encode(entry)) == entry


urls = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
        st.sampled_from(["http", "https", "ftp", ""]),
        st.text(alphabet=string.ascii_letters + string.digits + ".-[]:@", max_size=20),
        st.one_of(
            st.just(""), st.integers(0, 99999).map(lambda p: f":{p}"), st.text(max_size=5).map(":".__add__)
        ),
        st.text(max_size=30).map("/".__add__),
    ),
)


@FUZZ
@given(
    token=st.text(max_size=40),
    url=urls,
    params=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=8),
    signature=st.one_of(st.none(), st.text(max_size=40)),
    algorithm=st.one_of(st.sampled_from(["HMAC_SHA1", "HMAC_SHA256", "hmac_sha256"]), st.text(max_size=10)),
    settings_header=st.one_of(st.none(), st.text(max_size=40)),
)
def test_signature_check_never_raises(token, url, params, signature, algorithm, settings_header) -> None:
    assert isinstance(algorithm_from_settings(settings_header), str)
    assert is_valid_signature(token, url, params, signature, algorithm) in (True, False)


@FUZZ
@given(
    token=st.text(min_size=1, max_size=40),
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,5})?", fullmatch=True),
    port=st.sampled_from(["", ":443", ":8443"]),
    path=st.text(alphabet=string.ascii_letters + "/=&%-", max_size=30),
    query=st.sampled_from(["", "?mid=msg_1&cid=cus_1_X", "?bodySHA256=ab12"]),
    params=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=8),
    algorithm=st.sampled_from(["HMAC_SHA1", "HMAC_SHA256"]),
)
def test_signature_round_trips_and_detects_tampering(
    token, host, port, path, query, params, algorithm
) -> None:
    path += query
    url = f"https://{host}{port}/{path}"
    signature = compute_signature(token, url, params, algorithm)
    assert is_valid_signature(token, url, params, signature, algorithm)
    # Twilio may sign with or without the default port: both forms are accepted for each other.
    if port in ("", ":443"):
        other = f"https://{host}{':443' if port == '' else ''}/{path}"
        assert other in url_variants(url)
        assert is_valid_signature(token, other, params, signature, algorithm)
    else:
        assert not is_valid_signature(token, f"https://{host}/{path}", params, signature, algorithm)
    assert not is_valid_signature(token, url, [*params, ("Injected", "1")], signature, algorithm)
    assert not is_valid_signature(token + "x", url, params, signature, algorithm)
    assert urlsplit(url).hostname == host


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"to": st.one_of(st.fixed_dictionaries({"phone": phones}), json_values), "body": st.text(max_size=30)},
    optional={"type": st.text(max_size=12), "channel": st.text(max_size=10), "extra": json_values},
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(msgspec.json.encode),
    message_like.map(msgspec.json.encode),
    st.integers(1, 200).map(lambda depth: b"[" * depth + b"]" * depth),
)


@FUZZ
@given(body=bodies)
def test_api_body_decoding_raises_only_api_errors(body: bytes) -> None:
    depth = json_depth(body)
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        pass  # not JSON: the depth only has to stop a decoder before it recurses
    else:
        assert depth == nesting(value)
    try:
        request_fingerprint("POST", "/v1/messages", body)
        command = decode_json_body(body, SendMessage)
    except ApiError as exc:
        assert 400 <= exc.status < 500
        assert (exc.code == "json_too_deep") == (depth > MAX_JSON_DEPTH), exc.code
        return
    assert isinstance(command, SendMessage)
    assert depth <= MAX_JSON_DEPTH


def nesting(value: object) -> int:
    """How deeply arrays and objects nest in decoded JSON (the reference for json_depth)."""
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


# --- against the running gateway: no input makes it answer 5xx or kills a shard actor ------


@LIVE
@given(
    body=bodies,
    key=st.one_of(
        st.none(),
        st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " ", max_size=20),
    ),
)
async def test_gateway_never_answers_5xx_to_api_bodies(stack: Stack, body: bytes, key: str | None) -> None:
    headers = {**stack.auth, "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with stack.http.post(stack.gateway_url + "/v1/messages", data=body, headers=headers) as response:
        assert response.status < 500, await response.text()
        assert response.content_type == "application/json"


@LIVE
@given(extra=forms, body=st.text(max_size=80), status_path=st.booleans())
async def test_gateway_never_answers_5xx_to_signed_webhooks(
    stack: Stack, extra: dict[str, str], body: str, status_path: bool
) -> None:
    form = {**twilio_inbound_form(unique_phone(), body), **extra}
    # Control characters in a field name make the client refuse to send (header injection guard).
    form = {name: value for name, value in form.items() if name.isprintable()}
    path = "/webhooks/twilio/sms/status?mid=msg_X&cid=cus_1_X" if status_path else "/webhooks/twilio/sms"
    response = await stack.post_twilio(path, form)
    assert response.status < 500, await response.text()


@pytest.fixture(scope="module")
async def reachable(stack: Stack) -> tuple[str, str]:
    """A customer and a journey that exist, so odd query values reach the code that uses them."""
    status, body = await stack.api(
        "PUT", f"/v1/customers/fz_{uuid.uuid4().hex[:8]}", json={"identifiers": {"phone": unique_phone()}}
    )
    assert status == 201, body
    journey = "fz_" + uuid.uuid4().hex[:8]
    definition = {"trigger": {"event": "fz_ping"}, "steps": [{"id": "hi", "type": "send", "body": "hi"}]}
    status, published = await stack.api("PUT", f"/v1/journeys/{journey}", json=definition)
    assert status == 201, published
    return body["customer"]["id"], journey


thread_queries = st.dictionaries(
    st.sampled_from(["limit", "cursor", "since", "until", "channel", "direction"]),
    odd_query_values,
    min_size=1,
    max_size=3,
)


@LIVE
@given(query=thread_queries, version=odd_query_values)
async def test_gateway_never_answers_5xx_to_odd_query_values(
    stack: Stack, reachable: tuple[str, str], query: dict[str, str], version: str
) -> None:
    customer_id, journey = reachable
    for path, params in (
        (f"/v1/customers/{customer_id}/thread", query),
        (f"/v1/journeys/{journey}", {"version": version}),
    ):
        async with stack.http.get(stack.gateway_url + path, params=params, headers=stack.auth) as response:
            assert response.status < 500, (params, await response.text())
            assert response.content_type == "application/json"


@LIVE
@given(body=json_values.map(msgspec.json.encode), depth=nesting_depths)
async def test_gateway_never_answers_5xx_to_nested_json_webhooks(
    stack: Stack, body: bytes, depth: int
) -> None:
    if body.startswith(b"{"):
        body = with_nested_field(body, depth)
    for path in ("/webhooks/rcs", "/webhooks/whatsapp"):
        headers = {"Content-Type": "application/json"}
        async with stack.http.post(stack.gateway_url + path, data=body, headers=headers) as response:
            assert response.status < 500, await response.text()
            assert response.content_type == "application/json"


async def test_shard_actors_survive_the_fuzzing(stack: Stack) -> None:
    """Run after the live fuzzers (file order): every actor still answers."""
    from actors.supervisor import shards_ready

    assert await shards_ready(stack.actors, timeout=30) == []


@pytest.mark.parametrize("depth", [33, 10_000])
def test_deep_json_is_a_400_not_a_recursion_error(depth: int) -> None:
    with pytest.raises(ApiError) as caught:
        decode_json_body(b"[" * depth + b"]" * depth, SendMessage)
    assert caught.value.code == "json_too_deep"
