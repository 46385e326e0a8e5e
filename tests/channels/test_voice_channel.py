"""Voice end to end: a simulated caller's speech in the thread, notification calls and their statuses."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest

from tests.support.fixtures import fixture
from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone


async def _messages(stack: Stack, customer_id: str, count: int = 1) -> list[dict] | None:
    entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "message"]
    return entries if len(entries) >= count else None


async def _record(stack: Stack, message_id: str, status: str) -> dict | None:
    code, body = await stack.api("GET", f"/v1/messages/{message_id}")
    return body if code == 200 and body["status"] == status else None


async def test_a_call_is_answered_and_what_the_caller_says_lands_in_their_thread(stack: Stack) -> None:
    phone = unique_phone()
    call = await stack.simulator(
        "POST",
        "/simulator/voice/call",
        json={"from": phone, "utterances": ["Where is my parcel?", "No thanks."]},
    )
    assert call["gateway_status"] == 200 and "error" not in call
    answer = ET.fromstring(call["answer"].encode())
    gather = answer.find("Gather")
    assert gather is not None and gather.get("input") == "speech dtmf"
    greeting = gather.find("Say")
    assert greeting is not None and stack.config.voice.business_name in (greeting.text or "")
    first, last = call["turns"]
    assert first["action"].endswith("/webhooks/twilio/voice/gather?seq=1")
    assert first["gateway_status"] == last["gateway_status"] == 200
    assert ET.fromstring(first["twiml"].encode()).find("Gather") is not None
    closing = ET.fromstring(last["twiml"].encode())
    assert closing.find("Gather") is None and closing.find("Hangup") is not None

    customer_id = await eventually(lambda: stack.customer_id(phone))
    question, done = await eventually(lambda: _messages(stack, customer_id, 2))
    assert (question["channel"], question["direction"], question["body"]) == (
        "voice",
        "inbound",
        "Where is my parcel?",
    )
    assert question["provider_message_id"] == f"{call['call_sid']}:1"
    assert question["attributes"] == {
        "call_sid": call["call_sid"],
        "gather": "1",
        "input": "speech",
        "confidence": "0.9216",
    }
    assert (done["body"], done["attributes"]["gather"]) == ("No thanks.", "2")


async def test_sms_then_call_is_one_thread_in_order(stack: Stack) -> None:
    phone = unique_phone()
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "My parcel is late"))
    customer_id = await eventually(lambda: stack.customer_id(phone))
    await eventually(lambda: _messages(stack, customer_id))
    await stack.simulator("POST", "/simulator/voice/call", json={"from": phone, "digits": "2"})
    sms, pressed = await eventually(lambda: _messages(stack, customer_id, 2))
    assert [sms["channel"], pressed["channel"]] == ["sms", "voice"]
    assert (pressed["body"], pressed["attributes"]["input"]) == ("2", "dtmf")


async def test_gather_retries_and_forgeries(stack: Stack) -> None:
    phone = unique_phone()
    form = {**fixture("voice", "gather_speech"), "From": phone, "Caller": phone}
    forged = await stack.post_twilio("/webhooks/twilio/voice/gather?seq=1", form, signature="AAAA")
    assert forged.status == 403
    unsigned = await stack.post_twilio("/webhooks/twilio/voice", fixture("voice", "incoming_call"), None)
    assert unsigned.status == 403
    no_seq = await stack.post_twilio("/webhooks/twilio/voice/gather", form)
    assert no_seq.status == 400
    for _ in range(2):  # Twilio retried the Gather action: one entry
        response = await stack.post_twilio("/webhooks/twilio/voice/gather?seq=1", form)
        assert response.status == 200 and response.content_type == "text/xml"
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (entry,) = await eventually(lambda: _messages(stack, customer_id))
    marker = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "body": "marker", "channel": "sms"}
    )
    await eventually(lambda: _record(stack, marker[1]["id"], "delivered"))
    entries = await _messages(stack, customer_id, 2)
    assert entries is not None and len(entries) == 2 and entries[0]["body"] == entry["body"]


async def test_notification_call_says_the_message_and_ends_delivered(stack: Stack) -> None:
    phone = unique_phone()
    body = "Your verification code is 4 4 1 7. Don't share it & never say it <aloud>."
    status, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": phone}, "body": body, "channel": "voice", "type": "urgent"},
    )
    assert status == 202, accepted

    async def calls() -> list | None:
        return (await stack.simulator("GET", "/simulator/voice/calls", params={"to": phone}))["calls"]

    (call,) = await eventually(calls)
    # An urgent call is not exempt from consent: it ends by offering its opt-out key.
    assert call["spoken"] == [body, "To stop these calls, press 9."]
    assert f"mid={accepted['id']}" in call["status_callback"]
    assert call["events"] == ["initiated", "ringing", "answered", "completed"]
    record = await eventually(lambda: _record(stack, accepted["id"], "delivered"))
    assert (record["channel"], record["provider"], record["provider_message_id"]) == (
        "voice",
        "twilio",
        call["sid"],
    )
    assert {"queued", "sending", "sent", "delivered"} <= {h["status"] for h in record["history"]}


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed"])
async def test_unanswered_calls_are_failed_with_the_reason(stack: Stack, outcome: str) -> None:
    phone = unique_phone()
    await stack.simulator("POST", "/simulator/voice/fail", json={"status": outcome, "to": phone})
    _, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={
            "to": {"phone": phone},
            "body": "Your flight is delayed",
            "channel": "voice",
            "type": "transactional",
        },
    )
    record = await eventually(lambda: _record(stack, accepted["id"], "failed"))
    assert record["error_code"] == outcome
    assert outcome in {h["provider_status"] for h in record["history"]}


async def test_voice_is_only_for_urgent_or_transactional_messages(stack: Stack) -> None:
    status, body = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": unique_phone()}, "body": "50% off!", "channel": "voice", "type": "marketing"},
    )
    assert (status, body["error"]["code"], body["error"]["field"]) == (422, "channel_unavailable", "type")


async def test_simulator_calls_api_answers_in_twilios_format(stack: Stack) -> None:
    sid, token = stack.config.twilio.account_sid, stack.config.twilio.auth_token
    auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
    async with stack.http.post(
        f"{stack.simulator_url}/2010-04-01/Accounts/{sid}/Calls.json",
        data={"To": unique_phone(), "From": "+15005550006", "Twiml": "<Response><Say>Hi</Say></Response>"},
        headers={"Authorization": f"Basic {auth}"},
    ) as response:
        assert response.status == 201
        created = await response.json()
    assert set(created) == set(fixture("voice", "calls_create_response"))
    assert created["sid"].startswith("CA") and created["status"] == "queued"
