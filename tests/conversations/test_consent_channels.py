"""Opt-outs on every channel: keywords on WhatsApp, RCS and email replies, Meta's "Stop promotions"
button, "stop calling" in a call, the opt-out key of a notification call, and one-click
List-Unsubscribe (RFC 8058). Each is confirmed where it was made and audited with its channel
and source; later sends there are refused."""

from __future__ import annotations

import re
import time
import uuid
import xml.etree.ElementTree as ET

from tests.support.email import customer_by_email, mail_to, unique_email
from tests.support.stack import Stack, eventually, unique_phone
from tests.support.whatsapp import FIXTURE_CUSTOMER, fixture_for, post_whatsapp, wa_sent_to


async def _consent_log(stack: Stack, customer_id: str, count: int = 1) -> list[dict] | None:
    _, body = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    return body["data"] if len(body["data"]) >= count else None


async def _preferences(stack: Stack, customer_id: str) -> dict:
    _, body = await stack.api("GET", f"/v1/customers/{customer_id}/preferences")
    return body["preferences"]


async def _send(stack: Stack, payload: dict) -> str:
    status, accepted = await stack.api("POST", "/v1/messages", json=payload)
    assert status == 202, accepted
    return accepted["id"]


async def _assert_refused(stack: Stack, payload: dict) -> None:
    """A later send on the channel the customer opted out of fails as opted_out, unsent."""
    message_id = await _send(stack, payload)
    record = await eventually(lambda: _final(stack, message_id))
    assert (record["status"], record["error_code"]) == ("failed", "opted_out")


async def _final(stack: Stack, message_id: str) -> dict | None:
    code, body = await stack.api("GET", f"/v1/messages/{message_id}")
    return body if code == 200 and body["status"] in ("delivered", "failed", "read", "sent") else None


def _whatsapp(name: str, phone: str, text: str = "") -> bytes:
    """A captured webhook from ``phone``, sent now (inside the 24-hour window), with ``text``."""
    raw = fixture_for(name, {FIXTURE_CUSTOMER: phone})
    raw = re.sub(rb'"timestamp": "\d+"', f'"timestamp": "{int(time.time())}"'.encode(), raw)
    if text:
        raw = raw.replace(b'"body": "Does it come in another color?"', f'"body": "{text}"'.encode())
    return raw


async def test_whatsapp_stop_opts_out_of_whatsapp_and_confirms_there(stack: Stack) -> None:
    phone = unique_phone()
    raw = _whatsapp("text", phone, "Stop")
    assert b'"body": "Stop"' in raw
    response, _ = await post_whatsapp(stack, raw)
    assert response.status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (change,) = await eventually(lambda: _consent_log(stack, customer_id))
    assert (change["channel"], change["state"], change["source"], change.get("message_type")) == (
        "whatsapp",
        "opted_out",
        "whatsapp_keyword:STOP",
        None,
    )
    confirmation = await eventually(lambda: wa_sent_to(stack, phone))
    assert "unsubscribed" in confirmation[0]["text"]["body"], confirmation
    assert await stack.sent_to(phone) == []  # not by SMS: on the channel the customer used
    await _assert_refused(
        stack, {"to": {"phone": phone}, "channel": "whatsapp", "body": "20% off", "type": "service"}
    )
    assert "whatsapp" in (await _preferences(stack, customer_id))["channel_opt_outs"]


async def test_meta_stop_promotions_button_stops_marketing_only(stack: Stack) -> None:
    phone = unique_phone()
    response, _ = await post_whatsapp(stack, _whatsapp("button", phone))
    assert response.status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (change,) = await eventually(lambda: _consent_log(stack, customer_id))
    assert (change["channel"], change["state"], change["source"], change["message_type"]) == (
        "whatsapp",
        "opted_out",
        "whatsapp_button:stop_promotions",
        "marketing",
    )
    preferences = await _preferences(stack, customer_id)
    assert preferences["by_type"]["marketing"]["opted_out"] == ["whatsapp"]
    assert "channel_opt_outs" not in preferences  # service messages still reach them there
    (confirmation,) = await eventually(lambda: wa_sent_to(stack, phone))
    assert "no more offers" in confirmation["text"]["body"]
    service = await _send(
        stack,
        {"to": {"phone": phone}, "channel": "whatsapp", "body": "Your order shipped", "type": "service"},
    )
    record = await eventually(lambda: _final(stack, service))
    assert record["status"] != "failed", record


async def test_whatsapp_marketing_setting_stops_and_resumes_marketing(stack: Stack) -> None:
    """Meta's user_preferences webhook: the user turned marketing off (then on) in WhatsApp."""
    phone = unique_phone()
    stop = _whatsapp("user_preferences_stop", phone)
    for _ in range(2):  # Meta retries: one change
        response, _ = await post_whatsapp(stack, stop)
        assert response.status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (change,) = await eventually(lambda: _consent_log(stack, customer_id))
    assert (change["channel"], change["state"], change["source"], change["message_type"]) == (
        "whatsapp",
        "opted_out",
        "whatsapp_user_preferences:stop",
        "marketing",
    )
    assert (await _preferences(stack, customer_id))["by_type"]["marketing"]["opted_out"] == ["whatsapp"]
    resume = stop.replace(b'"value": "stop"', b'"value": "resume"').replace(b"to stop", b"to resume")
    response, _ = await post_whatsapp(stack, resume)
    assert response.status == 200
    changes = await eventually(lambda: _consent_log(stack, customer_id, 2))
    assert [(c["state"], c["source"]) for c in changes] == [
        ("opted_out", "whatsapp_user_preferences:stop"),
        ("opted_in", "whatsapp_user_preferences:resume"),
    ]
    assert await wa_sent_to(stack, phone) == []  # WhatsApp itself confirmed it to the user


async def test_rcs_stop_opts_out_of_rcs_and_confirms_on_rcs(stack: Stack) -> None:
    phone = unique_phone()
    sent = await stack.simulator("POST", "/simulator/rcs/inbound", json={"from": phone, "text": "STOP"})
    assert sent["gateway_status"] == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (change,) = await eventually(lambda: _consent_log(stack, customer_id))
    assert (change["channel"], change["state"], change["source"]) == ("rcs", "opted_out", "rcs_keyword:STOP")

    async def rcs_sent() -> list | None:
        return (await stack.simulator("GET", "/simulator/rcs/messages", params={"to": phone}))[
            "messages"
        ] or None

    (confirmation,) = await eventually(rcs_sent)
    assert "unsubscribed" in confirmation["contentMessage"]["text"]
    assert await stack.sent_to(phone) == []


async def test_email_reply_unsubscribe_opts_out_of_email_and_answers_by_email(stack: Stack) -> None:
    address = unique_email()
    await stack.simulator(
        "POST",
        "/simulator/email/inbound",
        json={
            "from": f"Ann <{address}>",
            "subject": "Re: Spring offers",
            "text": "unsubscribe\n\n> Spring offers",
        },
    )
    customer_id = await eventually(lambda: customer_by_email(stack, address))
    (change,) = await eventually(lambda: _consent_log(stack, customer_id))
    assert (change["channel"], change["state"], change["source"]) == (
        "email",
        "opted_out",
        "email_reply:UNSUBSCRIBE",
    )
    (confirmation,) = await eventually(lambda: mail_to(stack, address))
    assert confirmation["subject"] == "Re: Spring offers"
    assert "unsubscribed" in confirmation["text"]


async def test_an_ordinary_email_changes_no_consent(stack: Stack) -> None:
    address = unique_email()
    await stack.simulator(
        "POST",
        "/simulator/email/inbound",
        json={
            "from": address,
            "subject": "Stop by the store?",
            "text": "Can I stop by tomorrow to pick it up?",
        },
    )
    customer_id = await eventually(lambda: customer_by_email(stack, address))

    async def message_logged() -> list | None:
        entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "message"]
        return entries or None

    await eventually(message_logged)
    _, log = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    assert log["data"] == []


async def test_saying_stop_calling_opts_out_of_voice_and_the_call_confirms(stack: Stack) -> None:
    phone = unique_phone()
    call = await stack.simulator(
        "POST", "/simulator/voice/call", json={"from": phone, "utterances": ["Stop calling me!"]}
    )
    (turn,) = call["turns"]
    reply = ET.fromstring(turn["twiml"].encode())
    said = " ".join(element.text or "" for element in reply.iter("Say"))
    assert "not get any more calls" in said and reply.find("Hangup") is not None
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (change,) = await eventually(lambda: _consent_log(stack, customer_id))
    assert (change["channel"], change["state"], change["source"]) == (
        "voice",
        "opted_out",
        "voice_speech:stop_calling",
    )
    assert await stack.sent_to(phone) == []  # the call said it: no text follows
    await _assert_refused(
        stack, {"to": {"phone": phone}, "channel": "voice", "body": "Outage", "type": "urgent"}
    )


async def test_pressing_9_in_a_notification_call_opts_out_of_calls(stack: Stack) -> None:
    phone = unique_phone()
    await stack.simulator("POST", "/simulator/voice/press", json={"to": phone, "digits": "9"})
    first = await _send(
        stack, {"to": {"phone": phone}, "channel": "voice", "body": "Storm warning tonight", "type": "urgent"}
    )

    async def pressed() -> dict | None:
        calls = (await stack.simulator("GET", "/simulator/voice/calls", params={"to": phone}))["calls"]
        return calls[0] if calls and "keypress" in calls[0] else None

    call = await eventually(pressed)
    assert call["spoken"] == ["Storm warning tonight", "To stop these calls, press 9."]
    assert f"mid={first}" in call["keypress"]["action"] and call["keypress"]["gateway_status"] == 200
    assert "not get any more calls" in call["keypress"]["twiml"]
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (change,) = await eventually(lambda: _consent_log(stack, customer_id))
    assert (change["channel"], change["state"], change["source"]) == ("voice", "opted_out", "voice_dtmf:9")
    assert change["detail"].startswith(first)  # the attempt (call) the key was pressed in
    await _assert_refused(
        stack, {"to": {"phone": phone}, "channel": "voice", "body": "Outage", "type": "urgent"}
    )


async def test_transactional_calls_offer_no_opt_out(stack: Stack) -> None:
    phone = unique_phone()
    await _send(
        stack, {"to": {"phone": phone}, "channel": "voice", "body": "Code 4417", "type": "transactional"}
    )

    async def calls() -> list | None:
        return (await stack.simulator("GET", "/simulator/voice/calls", params={"to": phone}))["calls"] or None

    (call,) = await eventually(calls)
    assert call["spoken"] == ["Code 4417"]
    assert ET.fromstring(call["twiml"].encode()).find(".//Gather") is None


async def _marketing_email(stack: Stack, address: str) -> tuple[str, dict]:
    message_id = await _send(
        stack,
        {
            "to": {"email": address},
            "channel": "email",
            "subject": "Spring",
            "body": "10% off",
            "type": "marketing",
        },
    )
    (mail,) = await eventually(lambda: mail_to(stack, address))
    return message_id, mail


async def test_marketing_email_has_one_click_list_unsubscribe_that_opts_out(stack: Stack) -> None:
    address = unique_email()
    message_id, mail = await _marketing_email(stack, address)
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["headers"]["List-Unsubscribe"]
    assert link.startswith(f"<{stack.config.public_url}/unsubscribe/") and link.endswith(">")
    url = link[1:-1]
    customer_id = await eventually(lambda: customer_by_email(stack, address))

    async with stack.http.get(url) as page:  # a GET (a scanner, a person) changes nothing
        assert page.status == 200 and "Unsubscribe" in await page.text()
    _, log = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    assert log["data"] == []

    # What a mail client sends for RFC 8058 one-click; twice is still one opt-out.
    for _ in range(2):
        async with stack.http.post(url, data={"List-Unsubscribe": "One-Click"}) as response:
            assert response.status == 200 and "You are unsubscribed" in await response.text()
    (change,) = await eventually(lambda: _consent_log(stack, customer_id))
    assert (change["channel"], change["state"], change["source"]) == (
        "email",
        "opted_out",
        "email_list_unsubscribe",
    )
    assert change["detail"].startswith(message_id)  # the attempt (email) the link came in
    await _assert_refused(
        stack,
        {
            "to": {"email": address},
            "channel": "email",
            "subject": "More",
            "body": "15% off",
            "type": "marketing",
        },
    )
    assert len(await _consent_log(stack, customer_id) or []) == 1


async def test_unsubscribe_links_are_signed_and_transactional_mail_has_none(stack: Stack) -> None:
    address = unique_email()
    _, mail = await _marketing_email(stack, address)
    url = mail["headers"]["List-Unsubscribe"][1:-1]
    forged = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    async with stack.http.post(forged, data={"List-Unsubscribe": "One-Click"}) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "link_invalid"
    receipt_to = unique_email()
    await _send(
        stack,
        {
            "to": {"email": receipt_to},
            "channel": "email",
            "subject": "Receipt",
            "body": "Paid",
            "type": "transactional",
        },
    )
    (receipt,) = await eventually(lambda: mail_to(stack, receipt_to))
    assert "List-Unsubscribe" not in receipt["headers"]


def test_keyword_detection_per_channel() -> None:
    from conversations.keywords import Keyword, consent_keyword
    from conversations.models import Channel, InboundMessage
    from conversations.normalize import email_identifier, phone_identifier

    phone = phone_identifier("+14155550100")

    def inbound(channel: Channel, body: str, **extra: object) -> InboundMessage:
        sender = email_identifier("a@example.com") if channel is Channel.EMAIL else phone
        return InboundMessage(channel, "p", uuid.uuid4().hex, sender, "to", body, 0.0, **extra)  # type: ignore[arg-type]

    def found(entry: InboundMessage) -> tuple[str, str, str | None] | None:
        keyword = consent_keyword(entry)
        return None if keyword is None else (keyword.keyword.value, keyword.source, keyword.message_type)

    assert found(inbound(Channel.SMS, " stop ")) == (Keyword.OPT_OUT, "sms_keyword:STOP", None)
    assert found(inbound(Channel.SMS, "please stop")) is None
    assert found(inbound(Channel.WHATSAPP, "UNSTOP")) == (Keyword.OPT_IN, "whatsapp_keyword:UNSTOP", None)
    assert found(inbound(Channel.WHATSAPP, "Stop promotions", reply_payload="PROMO-OFF")) == (
        Keyword.OPT_OUT,
        "whatsapp_button:stop_promotions",
        "marketing",
    )
    # Typed (not the button), the phrase is ordinary text.
    assert found(inbound(Channel.WHATSAPP, "Stop promotions")) is None
    assert found(inbound(Channel.RCS, "Unsubscribe me", reply_payload="STOP")) == (
        Keyword.OPT_OUT,
        "rcs_button:STOP",
        None,
    )
    assert found(inbound(Channel.EMAIL, "Thanks!", subject="unsubscribe")) == (
        Keyword.OPT_OUT,
        "email_reply:UNSUBSCRIBE",
        None,
    )
    assert found(inbound(Channel.EMAIL, "> STOP\nOn Mon, Ann wrote:\nsee you", subject="Re: hi")) is None
    assert found(inbound(Channel.VOICE, "Don't call me.", attributes={"input": "speech"})) == (
        Keyword.OPT_OUT,
        "voice_speech:stop_calling",
        None,
    )
    assert found(inbound(Channel.VOICE, "9", attributes={"input": "dtmf"})) is None
    assert found(inbound(Channel.VOICE, "Stop by the shop later", attributes={"input": "speech"})) is None
