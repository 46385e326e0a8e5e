"""The webhook registry: every path has an adapter and a route, every provider event one clear outcome.

Pure tests: adapters get ``WebhookRequest`` values built from the captured fixtures and signed
the way each provider signs, so nothing here needs Redis, Ray or the network.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from multidict import MultiDict

from channels import rcs_rbm, whatsapp_cloud
from channels.base import InvalidPayload, WebhookRejected
from channels.inbound import AnyShard, ByCustomer, InboundAdapter, Parsed, WebhookRequest
from channels.twilio_signature import compute_signature
from conversations.config import Config
from conversations.models import Identifier, IdentifierKind, StatusUpdate
from conversations.slots import DEFAULT_SLOTS, default_slot_map
from gateway.app import create_app
from gateway.errors import ApiError
from gateway.routes.webhooks import WEBHOOKS, UnknownWebhook, adapter_for, status_callbacks
from gateway.webhook_handler import pick_shard
from tests.support.fixtures import fixture, fixture_bytes
from tests.support.stack import make_config, twilio_inbound_form

CONFIG: Config = make_config("redis://127.0.0.1:6379/0", 8080, 8081, "registry-test")
PUBLIC = CONFIG.public_url
CALLBACK = {"mid": "msg_01TEST", "cid": "cus_1_01TEST"}
PHONE = Identifier(IdentifierKind.PHONE, "+14158675308")


def twilio(
    path: str, form: dict[str, str], query: dict[str, str] | None = None, sign: bool = True
) -> WebhookRequest:
    url = PUBLIC + path + (f"?{urlencode(query)}" if query else "")
    headers = (
        {"X-Twilio-Signature": compute_signature(CONFIG.twilio.auth_token, url, form.items())} if sign else {}
    )
    return WebhookRequest("POST", url, query or {}, headers, form=MultiDict(form))


def whatsapp(body: bytes, sign: bool = True) -> WebhookRequest:
    headers = {
        whatsapp_cloud.SIGNATURE_HEADER: whatsapp_cloud.compute_signature(CONFIG.whatsapp.app_secret, body)
    }
    return WebhookRequest("POST", PUBLIC + "/webhooks/whatsapp", {}, headers if sign else {}, body=body)


def rbm(data: bytes, sign: bool = True) -> WebhookRequest:
    envelope = {"message": {"data": base64.b64encode(data).decode(), "messageId": "1"}, "subscription": "s"}
    headers = {"X-Goog-Signature": rcs_rbm.compute_signature(CONFIG.rbm.client_token, data)} if sign else {}
    return WebhookRequest("POST", PUBLIC + "/webhooks/rcs", {}, headers, body=json.dumps(envelope).encode())


def receive(path: str, request: WebhookRequest) -> Parsed:
    return adapter_for(path, CONFIG).receive(request, 1_700_000_000.0)


def test_every_registered_path_has_an_adapter_and_a_route() -> None:
    served = {
        (route.method, route.resource.canonical)
        for route in create_app(CONFIG).router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/webhooks/")
        and route.method != "HEAD"
    }
    declared = {(method, webhook.path) for webhook in WEBHOOKS for method in webhook.methods}
    assert served == declared
    for webhook in WEBHOOKS:
        assert isinstance(adapter_for(webhook.path, CONFIG), InboundAdapter), webhook.path


def test_an_unknown_path_is_one_clear_error() -> None:
    with pytest.raises(UnknownWebhook, match="/webhooks/nope"):
        adapter_for("/webhooks/nope", CONFIG)


def test_status_callbacks_are_the_urls_the_gateway_serves() -> None:
    callbacks = status_callbacks(PUBLIC)
    paths = {webhook.path for webhook in WEBHOOKS}
    assert callbacks.urls and all(url.removeprefix(PUBLIC) in paths for url in callbacks.urls.values())


# One line per provider event: the request, its dedupe key, and the shard key it lands by.
def _sms() -> WebhookRequest:
    return twilio("/webhooks/twilio/sms", twilio_inbound_form("+14158675308", "hi", sid="SM1"))


EVENTS: list[tuple[str, Any, list[tuple[str, Any]]]] = [
    ("/webhooks/twilio/sms", _sms, [("twilio:msg:SM1", PHONE)]),
    (
        "/webhooks/twilio/sms/status",
        lambda: twilio(
            "/webhooks/twilio/sms/status", {"MessageSid": "SM2", "MessageStatus": "delivered"}, CALLBACK
        ),
        [("twilio:status:SM2:delivered", ByCustomer("cus_1_01TEST"))],
    ),
    (
        "/webhooks/twilio/sms/status",
        lambda: twilio(
            "/webhooks/twilio/sms/status", {"MessageSid": "SM3", "MessageStatus": "received"}, CALLBACK
        ),
        [("twilio:status:SM3:received", ByCustomer("cus_1_01TEST"))],
    ),
    (
        "/webhooks/twilio/voice",
        lambda: twilio("/webhooks/twilio/voice", fixture("voice", "incoming_call")),
        [],
    ),
    (
        "/webhooks/twilio/voice/gather",
        lambda: twilio("/webhooks/twilio/voice/gather", fixture("voice", "gather_speech"), {"seq": "1"}),
        [("twilio:voice:CA5a1d0c3e9f7b2a4c6e8d0f1b3a5c7e9d:1", PHONE)],
    ),
    (
        "/webhooks/twilio/voice/gather",
        lambda: twilio("/webhooks/twilio/voice/gather", fixture("voice", "gather_silence"), {"seq": "1"}),
        [],
    ),
    (
        "/webhooks/twilio/voice/status",
        lambda: twilio("/webhooks/twilio/voice/status", fixture("voice", "status_completed"), CALLBACK),
        [("twilio:callstatus:CAbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:completed", ByCustomer("cus_1_01TEST"))],
    ),
    ("/webhooks/rcs", lambda: rbm(fixture_bytes("rcs", "user_message_text")), [("rbm:msg:", None)]),
    ("/webhooks/rcs", lambda: rbm(fixture_bytes("rcs", "user_event_read")), [("rbm:status:", None)]),
    ("/webhooks/rcs", lambda: rbm(fixture_bytes("rcs", "user_event_is_typing")), []),
    ("/webhooks/whatsapp", lambda: whatsapp(fixture_bytes("whatsapp", "text")), [("whatsapp:msg:", None)]),
]


@pytest.mark.parametrize(("path", "request_of", "expected"), EVENTS)
def test_each_event_lands_with_its_dedupe_and_shard_key(path: str, request_of: Any, expected: list) -> None:
    parsed = receive(path, request_of())
    assert len(parsed.entries) == len(expected)
    for item, (dedupe, shard_key) in zip(parsed.entries, expected, strict=True):
        assert item.dedupe_key.startswith(dedupe), item.dedupe_key
        if shard_key is not None:
            assert item.shard_key == shard_key
        if isinstance(item.entry, StatusUpdate):
            assert item.dedupe_key.endswith(f":{item.entry.provider_status}")
        assert 0 <= pick_shard(item.shard_key, CONFIG.slot_map()) < CONFIG.shards


# One line per provider: an event type we do not know is one InvalidPayload naming its field.
UNKNOWN_EVENTS = [
    (
        "/webhooks/twilio/sms/status",
        lambda: twilio(
            "/webhooks/twilio/sms/status", {"MessageSid": "SM4", "MessageStatus": "exploded"}, CALLBACK
        ),
        "MessageStatus",
    ),
    (
        "/webhooks/twilio/voice/status",
        lambda: twilio(
            "/webhooks/twilio/voice/status", {"CallSid": "CA1", "CallStatus": "teleported"}, CALLBACK
        ),
        "CallStatus",
    ),
    (
        "/webhooks/rcs",
        lambda: rbm(
            json.dumps({"senderPhoneNumber": "+14158675308", "messageId": "m", "eventType": "SHRUG"}).encode()
        ),
        "eventType",
    ),
]


@pytest.mark.parametrize(("path", "request_of", "field"), UNKNOWN_EVENTS)
def test_an_unknown_provider_event_is_one_clear_error(path: str, request_of: Any, field: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        receive(path, request_of())
    assert caught.value.field == field and caught.value.code == "invalid_payload"


def test_an_unknown_whatsapp_message_type_is_skipped_by_name_not_the_batch() -> None:
    body = fixture("whatsapp", "text")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["type"] = "hologram"
    parsed = receive("/webhooks/whatsapp", whatsapp(json.dumps(body).encode()))
    assert parsed.entries == [] and any("hologram" in reason for reason in parsed.skipped)


FORGERIES = [
    (
        "/webhooks/twilio/sms",
        lambda: twilio("/webhooks/twilio/sms", {"MessageSid": "SM5", "From": "+1415"}, sign=False),
    ),
    ("/webhooks/whatsapp", lambda: whatsapp(fixture_bytes("whatsapp", "text"), sign=False)),
    ("/webhooks/rcs", lambda: rbm(fixture_bytes("rcs", "user_message_text"), sign=False)),
]


@pytest.mark.parametrize(("path", "request_of"), FORGERIES)
def test_an_unsigned_request_is_rejected_before_parsing(path: str, request_of: Any) -> None:
    with pytest.raises(WebhookRejected) as caught:
        receive(path, request_of())
    assert caught.value.code == "signature_missing"


def test_a_malformed_body_names_the_field() -> None:
    body = b'{"object": "whatsapp_business_account", "entry": "not a list"}'
    with pytest.raises(InvalidPayload) as caught:
        receive("/webhooks/whatsapp", whatsapp(body))
    assert caught.value.field == "entry"
    with pytest.raises(InvalidPayload) as caught:
        receive("/webhooks/whatsapp", whatsapp(b"{not json"))
    assert caught.value.code == "invalid_json"


def test_a_callback_for_a_customer_we_cannot_place_is_400() -> None:
    four = default_slot_map(DEFAULT_SLOTS, 4)
    assert pick_shard(AnyShard("wamid.1"), four) == pick_shard(AnyShard("wamid.1"), four)
    with pytest.raises(ApiError) as caught:
        # A slot the deployment does not have (ids name slots; cus_9 is slot 9 now).
        pick_shard(ByCustomer(f"cus_{DEFAULT_SLOTS}_01TEST"), four)
    assert (caught.value.status, caught.value.code, caught.value.field) == (
        400,
        "invalid_callback_url",
        "cid",
    )


def test_the_whatsapp_answer_counts_duplicates() -> None:
    adapter = adapter_for("/webhooks/whatsapp", CONFIG)
    parsed = adapter.receive(whatsapp(fixture_bytes("whatsapp", "batched")), 1.0)
    reply = adapter.answer(parsed, [False] * len(parsed.entries))
    received = msgspec.json.decode(reply.body, type=whatsapp_cloud.Received)
    assert received.duplicates == len(parsed.entries) == received.messages + received.statuses
    assert reply.content_type == "application/json"
