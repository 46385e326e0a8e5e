"""The Twilio Voice adapter: fixtures parse right, TwiML is well-formed and escaped, statuses map."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from channels.base import InvalidPayload
from channels.voice_twilio import (
    answer_twiml,
    notification_twiml,
    parse_call,
    parse_call_status,
    parse_gather,
    reply_twiml,
)
from conversations.config import VoiceConfig
from conversations.models import Channel, Identifier, IdentifierKind, MessageStatus
from gateway.routes.webhooks import TWILIO_GATHER_PATH as GATHER_PATH
from tests.support.fixtures import fixture

CALLER = Identifier(IdentifierKind.PHONE, "+14158675308")


def test_incoming_call_names_the_caller() -> None:
    call = parse_call(fixture("voice", "incoming_call"))
    assert (call.call_sid, call.caller, call.called, call.status) == (
        "CA5a1d0c3e9f7b2a4c6e8d0f1b3a5c7e9d",
        CALLER,
        "+15005550006",
        "ringing",
    )


def test_answer_is_a_gather_with_the_escaped_greeting() -> None:
    twiml = answer_twiml(VoiceConfig(business_name='Smith & Sons <"Threadline">'), GATHER_PATH)
    assert "Smith &amp; Sons &lt;" in twiml
    root = ET.fromstring(twiml.encode())
    gather = root.find("Gather")
    assert gather is not None and root.tag == "Response"
    assert gather.attrib == {
        "input": "speech dtmf",
        "action": "/webhooks/twilio/voice/gather?seq=1",
        "method": "POST",
        "speechTimeout": "auto",
        "language": "en-US",
    }
    greeting = gather.find("Say")
    assert greeting is not None and 'Smith & Sons <"Threadline">' in (greeting.text or "")


def test_speech_becomes_an_inbound_voice_entry() -> None:
    entry = parse_gather(fixture("voice", "gather_speech"), seq=1, received_at=5.0)
    assert entry is not None
    assert (entry.channel, entry.provider, entry.sender) == (Channel.VOICE, "twilio", CALLER)
    assert entry.body == "I need to change my delivery address."
    assert entry.provider_message_id == "CA5a1d0c3e9f7b2a4c6e8d0f1b3a5c7e9d:1"
    assert entry.attributes == {
        "call_sid": "CA5a1d0c3e9f7b2a4c6e8d0f1b3a5c7e9d",
        "gather": "1",
        "input": "speech",
        "confidence": "0.9216",
    }


def test_digits_become_an_entry_and_silence_none() -> None:
    entry = parse_gather(fixture("voice", "gather_digits"), seq=2, received_at=5.0)
    assert entry is not None and entry.body == "2" and entry.attributes["input"] == "dtmf"
    assert entry.provider_message_id.endswith(":2")
    assert parse_gather(fixture("voice", "gather_silence"), seq=1, received_at=5.0) is None


def test_gather_without_caller_is_invalid() -> None:
    form = {k: v for k, v in fixture("voice", "gather_speech").items() if k != "From"}
    with pytest.raises(InvalidPayload) as caught:
        parse_gather(form, seq=1, received_at=0.0)
    assert caught.value.field == "From"


def test_reply_listens_again_until_the_caller_is_done() -> None:
    config = VoiceConfig(max_turns=3)
    again = ET.fromstring(reply_twiml(config, 1, "Where is my parcel?", GATHER_PATH).encode())
    gather = again.find("Gather")
    assert gather is not None and gather.get("action") == "/webhooks/twilio/voice/gather?seq=2"
    for heard, seq in (("No thanks.", 1), ("", 1), ("One more thing", 3)):
        done = ET.fromstring(reply_twiml(config, seq, heard, GATHER_PATH).encode())
        assert done.find("Gather") is None and done.find("Hangup") is not None


@pytest.mark.parametrize(
    "name, status, error_code",
    [
        ("status_initiated", MessageStatus.QUEUED, ""),
        ("status_ringing", MessageStatus.SENDING, ""),
        ("status_in_progress", MessageStatus.SENT, ""),
        ("status_completed", MessageStatus.DELIVERED, ""),
        ("status_busy", MessageStatus.FAILED, "busy"),
        ("status_no_answer", MessageStatus.FAILED, "no-answer"),
        ("status_failed", MessageStatus.FAILED, "failed"),
    ],
)
def test_call_statuses_map_to_ours(name: str, status: MessageStatus, error_code: str) -> None:
    form = fixture("voice", name)
    entry = parse_call_status(form, "msg_1", "cus_0_1", at=1.0)
    assert (entry.status, entry.error_code, entry.provider_status) == (status, error_code, form["CallStatus"])
    assert (entry.channel, entry.provider_message_id, entry.message_id) == (
        Channel.VOICE,
        form["CallSid"],
        "msg_1",
    )
    if name == "status_failed":
        assert "12100" in entry.error_message


def test_unknown_call_status_is_invalid() -> None:
    with pytest.raises(InvalidPayload):
        parse_call_status({"CallSid": "CA1", "CallStatus": "exploded"}, "m", "c", at=0.0)


def test_notification_twiml_escapes_the_message() -> None:
    message = 'Code <1234> & "urgent"'
    root = ET.fromstring(notification_twiml(message, "en-US").encode())
    (say,) = list(root)
    assert (root.tag, say.tag, say.text) == ("Response", "Say", message)
