"""POST /v1/messages on WhatsApp → shard → Cloud API (simulator) → signed status webhooks → thread."""

from __future__ import annotations

import time

from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone
from tests.support.whatsapp import message_record, wa_sent_to


async def _customer_writes(stack: Stack, phone: str, body: str = "Hi!", **extra: object) -> str:
    """A customer writes on WhatsApp (through the fake Graph API); returns their customer id."""
    result = await stack.simulator(
        "POST", "/simulator/whatsapp/inbound", json={"from": phone, "body": body, **extra}
    )
    assert result["gateway_status"] == 200, result
    return await eventually(lambda: stack.customer_id(phone))


async def _send(stack: Stack, phone: str, **fields: object) -> str:
    status, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "channel": "whatsapp", **fields}
    )
    assert status == 202, accepted
    return accepted["id"]


async def _reaches(stack: Stack, message_id: str, status: str) -> dict:
    async def probe() -> dict | None:
        record = await message_record(stack, message_id)
        return record if record["status"] == status else None

    return await eventually(probe, timeout=20)


async def test_a_reply_in_the_window_is_sent_and_ends_read(stack: Stack) -> None:
    phone = unique_phone()
    customer_id = await _customer_writes(stack, phone, "Where is my parcel?")
    message_id = await _send(stack, phone, body="It arrives tomorrow")

    (sent,) = await eventually(lambda: wa_sent_to(stack, phone))
    assert (sent["type"], sent["text"]["body"], sent["to"]) == ("text", "It arrives tomorrow", phone[1:])
    record = await _reaches(stack, message_id, "read")
    assert (record["channel"], record["provider"], record["provider_message_id"]) == (
        "whatsapp",
        "meta",
        sent["id"],
    )
    assert {"accepted", "queued", "sent", "delivered", "read"} <= {h["status"] for h in record["history"]}

    entries = (await stack.thread(customer_id))["entries"]
    assert [(e["direction"], e["body"]) for e in entries if e["kind"] == "message"] == [
        ("inbound", "Where is my parcel?"),
        ("outbound", "It arrives tomorrow"),
    ]
    assert {"sent", "delivered", "read"} <= {e["status"] for e in entries if e["kind"] == "status"}


async def test_simulated_131026_shows_failed_with_the_code(stack: Stack) -> None:
    phone = unique_phone()
    await _customer_writes(stack, phone)
    await stack.simulator("POST", "/simulator/whatsapp/fail", json={"error_code": 131026, "to": phone})
    message_id = await _send(stack, phone, body="Are you there?")
    record = await _reaches(stack, message_id, "failed")
    assert (record["error_code"], record["error_message"]) == ("131026", "Message undeliverable")
    assert len(await wa_sent_to(stack, phone)) == 1  # Meta took it, then reported the failure


async def test_free_form_outside_the_window_is_refused_by_us(stack: Stack) -> None:
    phone = unique_phone()
    # The customer texted by SMS: that opens no WhatsApp window.
    assert (await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "hi"))).status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    message_id = await _send(stack, phone, body="Your parcel is on its way", type="service")

    record = await _reaches(stack, message_id, "failed")
    assert record["error_code"] == "outside_window"
    assert "24-hour window" in record["error_message"]
    entries = (await stack.thread(customer_id))["entries"]
    assert any(
        e["kind"] == "routing" and e["event"] == "refused" and "24-hour window" in e["detail"]
        for e in entries
    )
    # Later sends did reach the simulator, so "nothing sent" here is not just slowness.
    marker = unique_phone()
    await _customer_writes(stack, marker)
    await _send(stack, marker, body="marker")
    await eventually(lambda: wa_sent_to(stack, marker))
    assert await wa_sent_to(stack, phone) == []


async def test_after_24_hours_the_configured_template_stands_in(stack: Stack) -> None:
    phone = unique_phone()
    yesterday = int(time.time()) - 25 * 3600
    await _customer_writes(stack, phone, "thanks", timestamp=yesterday)

    refused = await _send(stack, phone, body="Anything else?", type="service")  # no template for "service"
    templated = await _send(stack, phone, body="Order A-123 shipped", type="transactional")

    assert (await _reaches(stack, refused, "failed"))["error_code"] == "outside_window"
    record = await _reaches(stack, templated, "read")
    assert record["template"] == {
        "name": "order_update",
        "language": "en_US",
        "variables": ["Order A-123 shipped"],
    }
    (sent,) = await wa_sent_to(stack, phone)
    assert sent["type"] == "template"
    assert sent["template"]["name"] == "order_update"
    assert sent["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Order A-123 shipped"}
    ]


async def test_an_explicit_template_is_sent_to_a_customer_who_never_wrote(stack: Stack) -> None:
    phone = unique_phone()
    template = {"name": "appointment_reminder", "language": "en_GB", "variables": ["Tue 10:00"]}
    message_id = await _send(stack, phone, whatsapp_template=template)
    record = await _reaches(stack, message_id, "read")
    assert record["body"] == "[template appointment_reminder (en_GB): Tue 10:00]"
    (sent,) = await wa_sent_to(stack, phone)
    assert (sent["template"]["name"], sent["template"]["language"]) == (
        "appointment_reminder",
        {"code": "en_GB"},
    )


async def test_graph_refusal_131047_is_final(stack: Stack) -> None:
    phone = unique_phone()
    await _customer_writes(stack, phone)
    await stack.simulator(
        "POST",
        "/simulator/whatsapp/fail",
        json={"error_code": 131047, "http_status": 400, "count": 3, "to": phone},
    )
    message_id = await _send(stack, phone, body="late reply")
    record = await _reaches(stack, message_id, "failed")
    assert record["error_code"] == "131047"
    assert "Re-engagement message" in record["error_message"]
    assert await wa_sent_to(stack, phone) == []
    # Not retried: two of the three scripted refusals are still waiting for this number.
    listing = await stack.simulator("GET", "/simulator/whatsapp/messages", params={"to": phone})
    assert [f["count"] for f in listing["failures"]] == [2]


async def test_rate_limit_130429_is_retried_and_sent_once(stack: Stack) -> None:
    phone = unique_phone()
    await _customer_writes(stack, phone)
    await stack.simulator(
        "POST",
        "/simulator/whatsapp/fail",
        json={"error_code": 130429, "http_status": 400, "count": 2, "to": phone},
    )
    message_id = await _send(stack, phone, body="after the throttle")
    await _reaches(stack, message_id, "read")
    assert len(await wa_sent_to(stack, phone)) == 1


async def test_send_request_validation(stack: Stack) -> None:
    phone = unique_phone()
    cases = [
        ({"channel": "sms", "body": "x", "whatsapp_template": {"name": "t"}}, "whatsapp_template"),
        ({"channel": "whatsapp"}, "body"),
        ({"channel": "whatsapp", "whatsapp_template": {"name": ""}}, "whatsapp_template.name"),
        ({"channel": "whatsapp", "whatsapp_template": {"name": "t", "extra": 1}}, "whatsapp_template.extra"),
    ]
    for fields, field in cases:
        status, body = await stack.api("POST", "/v1/messages", json={"to": {"phone": phone}, **fields})
        assert status == 422, (fields, body)
        assert body["error"]["field"] == field, body
