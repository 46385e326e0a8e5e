"""Each captured Cloud API payload parses into the right entries: one fixture per event."""

from __future__ import annotations

import json

import msgspec
import pytest

from channels.base import ProviderError
from channels.whatsapp_cloud import (
    ParsedWebhook,
    classify,
    compute_signature,
    decode_webhook,
    is_valid_signature,
    parse_webhook,
    read_graph_error,
    render_send,
)
from conversations.models import (
    Channel,
    Identifier,
    IdentifierKind,
    InboundMessage,
    Location,
    MessageStatus,
    OutboxJob,
    TemplateRef,
)
from tests.support.whatsapp import FIXTURES, fixture_bytes

NOW = 1_750_000_000.0
SHEENA = Identifier(IdentifierKind.PHONE, "+16505551234")
ALEX = Identifier(IdentifierKind.PHONE, "+447700900123")
OUT = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI3QjRDNjA4QUM4RjI1NEMxRDcA"

# Every fixture file is an event we handle or knowingly skip; a new file must be declared here.
EVENTS = {
    "text": "message",
    "interactive_button_reply": "message",
    "interactive_list_reply": "message",
    "button": "message",
    "image": "message",
    "location": "message",
    "reaction": "skipped",
    "status_sent": "status",
    "status_delivered": "status",
    "status_read": "status",
    "status_failed_131026": "status",
    "status_failed_131047": "status",
    "batched": "batch",
    "user_preferences_stop": "consent",
}


def parse(name: str) -> ParsedWebhook:
    return parse_webhook(decode_webhook(fixture_bytes(name)), NOW)


def check_message(name: str, body: str, **expected: object) -> InboundMessage:
    parsed = parse(name)
    assert parsed.statuses == [] and parsed.skipped == []
    (message,) = parsed.messages
    assert (message.channel, message.provider, message.sender) == (Channel.WHATSAPP, "meta", SHEENA)
    assert message.body == body
    assert message.profile_name == "Sheena Nelson"
    assert message.provider_message_id.startswith("wamid.")
    for field, value in expected.items():
        assert getattr(message, field) == value, field
    return message


def check_status(name: str, status: MessageStatus, error_code: str = "", error_message: str = "") -> None:
    parsed = parse(name)
    assert parsed.messages == [] and parsed.skipped == []
    (update,) = parsed.statuses
    assert (update.channel, update.provider, update.provider_message_id) == (Channel.WHATSAPP, "meta", OUT)
    assert (update.status, update.provider_status) == (status, status.value)
    assert update.recipient == SHEENA
    assert (update.message_id, update.customer_id) == ("", "")  # the hub resolves them by wamid
    assert (update.error_code, update.error_message) == (error_code, error_message)


def test_every_fixture_is_a_declared_event() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.json")) == sorted(EVENTS)


def test_text() -> None:
    check_message("text", "Does it come in another color?", received_at=1749416383.0, recipient="15550783881")


def test_interactive_button_reply() -> None:
    check_message("interactive_button_reply", "Change", reply_payload="change-delivery-slot")


def test_interactive_list_reply() -> None:
    check_message("interactive_list_reply", "Express shipping", reply_payload="priority-express")


def test_template_quick_reply_button() -> None:
    check_message("button", "Stop promotions", reply_payload="STOP-PROMOS")


def test_image() -> None:
    message = check_message("image", "The scratch on the box")
    (media,) = message.media
    assert (media.id, media.content_type) == ("1003383421387256", "image/jpeg")
    assert media.url.startswith("https://lookaside.fbsbx.com/")


def test_location() -> None:
    check_message(
        "location",
        "Location: Meta Headquarters, 1 Hacker Way, Menlo Park, CA 94025 (37.4611978, -122.2164385)",
        location=Location(
            37.4611978, -122.2164385, "Meta Headquarters", "1 Hacker Way, Menlo Park, CA 94025"
        ),
    )


def test_reaction_is_skipped_by_name() -> None:
    parsed = parse("reaction")
    assert parsed.messages == [] and parsed.statuses == []
    assert len(parsed.skipped) == 1 and "unsupported message type 'reaction'" in parsed.skipped[0]


def test_status_sent() -> None:
    check_status("status_sent", MessageStatus.SENT)


def test_status_delivered() -> None:
    check_status("status_delivered", MessageStatus.DELIVERED)


def test_status_read() -> None:
    check_status("status_read", MessageStatus.READ)


def test_status_failed_131026() -> None:
    check_status("status_failed_131026", MessageStatus.FAILED, "131026", "Message undeliverable")


def test_status_failed_131047() -> None:
    check_status(
        "status_failed_131047",
        MessageStatus.FAILED,
        "131047",
        "Re-engagement message: Message failed to send because more than 24 hours have passed "
        "since the customer last replied to this number.",
    )


def test_user_preferences_stop_is_a_marketing_opt_out() -> None:
    parsed = parse("user_preferences_stop")
    assert parsed.messages == [] and parsed.statuses == [] and parsed.skipped == []
    (consent,) = parsed.consent
    assert (consent.customer, consent.channel, consent.message_type, consent.opted_out) == (
        SHEENA,
        Channel.WHATSAPP,
        "marketing",
        True,
    )
    assert (consent.source, consent.at, consent.customer_id) == (
        "whatsapp_user_preferences:stop",
        1749416810.0,
        "",
    )
    unknown = json.loads(fixture_bytes("user_preferences_stop"))
    unknown["entry"][0]["changes"][0]["value"]["user_preferences"][0]["value"] = "maybe"
    parsed = parse_webhook(decode_webhook(json.dumps(unknown).encode()), NOW)
    assert parsed.consent == [] and "unknown preference value 'maybe'" in parsed.skipped[0]


def test_batched_post_is_parsed_whole_in_order() -> None:
    parsed = parse("batched")
    assert parsed.skipped == []
    assert [(m.sender, m.body, m.profile_name) for m in parsed.messages] == [
        (SHEENA, "Is my order on its way?", "Sheena Nelson"),
        (ALEX, "Hello, I need to change my address", "Alex Morgan"),
        (SHEENA, "Track order", "Sheena Nelson"),
    ]
    assert parsed.messages[2].reply_payload == "track-order"
    assert [(s.recipient, s.status) for s in parsed.statuses] == [
        (SHEENA, MessageStatus.DELIVERED),
        (ALEX, MessageStatus.READ),
    ]


def test_other_objects_and_fields_are_told_apart() -> None:
    page = json.loads(fixture_bytes("text"))
    page["object"] = "page"
    with pytest.raises(ValueError, match="whatsapp_business_account"):
        parse_webhook(decode_webhook(json.dumps(page).encode()), NOW)
    template_update = json.loads(fixture_bytes("status_sent"))
    template_update["entry"][0]["changes"][0]["field"] = "message_template_status_update"
    parsed = parse_webhook(decode_webhook(json.dumps(template_update).encode()), NOW)
    assert parsed.statuses == [] and parsed.skipped == ["change of field 'message_template_status_update'"]


def test_malformed_body_is_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_webhook(b'{"object": "whatsapp_business_account", "entry": [')
    with pytest.raises(msgspec.ValidationError):
        decode_webhook(b'{"object": "whatsapp_business_account", "entry": {}}')


# --- signatures ------------------------------------------------------------------------------


def test_signature_is_over_the_raw_bytes() -> None:
    raw = fixture_bytes("text")
    signature = compute_signature("app-secret", raw)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert is_valid_signature("app-secret", raw, signature)
    assert is_valid_signature("app-secret", raw, signature.upper().replace("SHA256=", "sha256="))
    reserialised = json.dumps(json.loads(raw)).encode()  # same JSON, other bytes
    assert not is_valid_signature("app-secret", reserialised, signature)
    assert not is_valid_signature("other-secret", raw, signature)
    assert not is_valid_signature("app-secret", raw, signature.replace("sha256=", "sha1="))
    assert not is_valid_signature("app-secret", raw, None)
    assert not is_valid_signature("", raw, compute_signature("", raw))  # no secret: nothing passes
    assert not is_valid_signature("app-secret", raw, "sha256=é" * 3)  # no exception on junk


# --- sending ---------------------------------------------------------------------------------


def test_text_and_template_requests_in_the_cloud_api_format() -> None:
    job = OutboxJob("msg_1", "cus_0_1", Channel.WHATSAPP, "+16505551234", "On its way!")
    assert msgspec.to_builtins(render_send(job)) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "text",
        "text": {"body": "On its way!", "preview_url": False},
    }
    templated = msgspec.structs.replace(
        job, template=TemplateRef("order_update", "en_US", ("A-123", "Friday"))
    )
    assert msgspec.to_builtins(render_send(templated))["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "A-123"}, {"type": "text", "text": "Friday"}],
            }
        ],
    }
    bare = msgspec.structs.replace(job, template=TemplateRef("hello_world"))
    assert msgspec.to_builtins(render_send(bare))["template"] == {
        "name": "hello_world",
        "language": {"code": "en_US"},
    }


def test_graph_errors_map_to_final_or_retryable() -> None:
    body = (
        b'{"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047}}'
    )
    assert read_graph_error(body) == ("131047", "(#131047) Re-engagement message")
    assert read_graph_error(b"<html>bad gateway</html>") == ("", "<html>bad gateway</html>")

    def refused(code: str, http_status: int) -> ProviderError:
        return classify(ProviderError("x", code=code, retryable=http_status >= 500, http_status=http_status))

    assert not refused("131026", 400).retryable
    assert not refused("131047", 400).retryable
    assert not refused("190", 401).retryable
    assert refused("130429", 400).retryable
    assert refused("131056", 400).retryable and refused("131056", 400).retry_after == 6.0
    assert refused("131000", 500).retryable  # 5xx stays retryable
