"""One person on WhatsApp (Meta or Twilio) and SMS is one customer with one thread, in order."""

from __future__ import annotations

from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone
from tests.support.whatsapp import customer_hash, messages_of

TWILIO_WHATSAPP_SENDER = "whatsapp:+14155238886"


async def test_whatsapp_then_sms_is_one_thread_in_order(stack: Stack) -> None:
    phone = unique_phone()
    result = await stack.simulator(
        "POST", "/simulator/whatsapp/inbound", json={"from": phone, "body": "Hi, on WhatsApp", "name": "Dana"}
    )
    assert result["gateway_status"] == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    await eventually(lambda: messages_of(stack, customer_id))
    sms = await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "And now by SMS"))
    assert sms.status == 200

    entries = await eventually(lambda: messages_of(stack, customer_id, at_least=2))
    assert [(e["channel"], e["body"]) for e in entries] == [
        ("whatsapp", "Hi, on WhatsApp"),
        ("sms", "And now by SMS"),
    ]
    assert await stack.customer_id(phone) == customer_id
    assert (await customer_hash(stack, customer_id))["last_channel"] == "sms"


async def test_whatsapp_via_twilio_joins_the_sms_thread(stack: Stack) -> None:
    phone = unique_phone()
    assert (
        await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "by SMS first"))
    ).status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    await eventually(lambda: messages_of(stack, customer_id))
    whatsapp = twilio_inbound_form(
        f"whatsapp:{phone}",
        "Yes, reschedule",
        To=TWILIO_WHATSAPP_SENDER,
        WaId=phone[1:],
        ProfileName="Dana W.",
        MessageType="button",
        ButtonText="Yes, reschedule",
        ButtonPayload="reschedule-yes",
    )
    response = await stack.post_twilio("/webhooks/twilio/sms", whatsapp)
    assert response.status == 200

    first, second = await eventually(lambda: messages_of(stack, customer_id, at_least=2))
    assert (first["channel"], first["body"]) == ("sms", "by SMS first")
    assert (second["channel"], second["provider"], second["address"]) == ("whatsapp", "twilio", phone)
    assert (second["body"], second["reply_payload"]) == ("Yes, reschedule", "reschedule-yes")
    profile = await customer_hash(stack, customer_id)
    assert profile["profile_name"] == "Dana W."
    assert "last_inbound_at:whatsapp" in profile and "last_inbound_at:sms" in profile


async def test_a_whatsapp_button_with_no_body_takes_its_text(stack: Stack) -> None:
    phone = unique_phone()
    form = twilio_inbound_form(
        f"whatsapp:{phone}", "", To=TWILIO_WHATSAPP_SENDER, ButtonText="Confirm", ButtonPayload="ok"
    )
    assert (await stack.post_twilio("/webhooks/twilio/sms", form)).status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (entry,) = await eventually(lambda: messages_of(stack, customer_id))
    assert (entry["channel"], entry["body"], entry["reply_payload"]) == ("whatsapp", "Confirm", "ok")
