"""STOP/START/HELP, preferences and the consent audit log."""

from __future__ import annotations

import uuid

from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone


async def _texts(stack: Stack, phone: str, *bodies: str) -> str:
    for body in bodies:
        assert (
            await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, body))
        ).status == 200
    return await eventually(lambda: stack.customer_id(phone))


async def _record_when(stack: Stack, message_id: str, status: str) -> dict:
    async def probe() -> dict | None:
        code, body = await stack.api("GET", f"/v1/messages/{message_id}")
        return body if code == 200 and body["status"] == status else None

    return await eventually(probe)


async def test_stop_opts_out_confirms_and_refuses_later_sends(stack: Stack) -> None:
    phone = unique_phone()
    customer_id = await _texts(stack, phone, "stop")
    replies = await eventually(lambda: stack.sent_to(phone))
    assert "unsubscribed" in replies[0]["body"]

    async def consent() -> list | None:
        _, body = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
        return body["data"] or None

    (change,) = await eventually(consent)
    assert (change["channel"], change["state"], change["source"]) == ("sms", "opted_out", "sms_keyword:STOP")

    _, marketing = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": phone}, "channel": "sms", "body": "50% off!", "type": "marketing"},
    )
    record = await _record_when(stack, marketing["id"], "failed")
    assert record["error_code"] == "opted_out"
    assert "sms_keyword:STOP" in record["error_message"]
    _, otp = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": phone}, "channel": "sms", "body": "Your code is 1234", "type": "transactional"},
    )
    await _record_when(stack, otp["id"], "delivered")
    bodies = [m["body"] for m in await stack.sent_to(phone)]
    assert "50% off!" not in bodies and "Your code is 1234" in bodies


async def test_start_opts_back_in_and_help_changes_nothing(stack: Stack) -> None:
    phone = unique_phone()
    customer_id = await _texts(stack, phone, "STOP")
    await eventually(lambda: stack.sent_to(phone))
    await _texts(stack, phone, " Start ", "HELP")

    async def three_replies() -> list | None:
        sent = await stack.sent_to(phone)
        return sent if len(sent) == 3 else None

    sent = await eventually(three_replies)
    assert "subscribed again" in sent[1]["body"] and "STOP to unsubscribe" in sent[2]["body"]
    _, log = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    assert [(c["state"], c["source"]) for c in log["data"]] == [
        ("opted_out", "sms_keyword:STOP"),
        ("opted_in", "sms_keyword:START"),
    ]
    _, promo = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": phone}, "channel": "sms", "body": "welcome back", "type": "service"},
    )
    await _record_when(stack, promo["id"], "delivered")


async def test_a_keyword_inside_a_sentence_is_just_a_message(stack: Stack) -> None:
    phone = unique_phone()
    customer_id = await _texts(stack, phone, "please stop calling me at work")
    entries = await eventually(lambda: _entries(stack, customer_id))
    assert entries[0]["body"] == "please stop calling me at work"
    _, log = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    assert log["data"] == []
    assert await stack.sent_to(phone) == []


async def test_preferences_api_audits_opt_outs_and_counts_adoption(stack: Stack) -> None:
    phone = unique_phone()
    _, created = await stack.api(
        "PUT", f"/v1/customers/pref-{uuid.uuid4().hex[:8]}", json={"identifiers": {"phone": phone}}
    )
    customer_id = created["customer"]["id"]
    _, before = await stack.api("GET", "/v1/stats/preferences")
    body = {
        "preferences": {
            "marketing": {"order": ["email", "whatsapp"], "opted_out": ["sms"]},
            "service": {"order": ["whatsapp", "sms"]},
        }
    }
    status, reply = await stack.api("PUT", f"/v1/customers/{customer_id}/preferences", json=body)
    assert status == 200, reply
    assert [(c["channel"], c["state"], c["message_type"], c["source"]) for c in reply["changes"]] == [
        ("sms", "opted_out", "marketing", "api")
    ]
    _, after = await stack.api("GET", "/v1/stats/preferences")
    assert after["customers_with_preferences"] == before["customers_with_preferences"] + 1
    first = lambda stats, t, c: stats["by_type"].get(t, {}).get(c, {}).get("first", 0)  # noqa: E731
    assert first(after, "marketing", "email") == first(before, "marketing", "email") + 1
    _, promo = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": phone}, "channel": "sms", "body": "sale", "type": "marketing"},
    )
    record = await _record_when(stack, promo["id"], "failed")
    assert record["error_code"] == "opted_out"
    # Opting back in through the API is audited too.
    status, reply = await stack.api(
        "PUT", f"/v1/customers/{customer_id}/preferences", json={"preferences": {}}
    )
    assert [(c["channel"], c["state"]) for c in reply["changes"]] == [("sms", "opted_in")]
    _, log = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    assert len(log["data"]) == 2


async def test_bad_preferences_are_422(stack: Stack) -> None:
    _, created = await stack.api(
        "PUT", f"/v1/customers/pref-{uuid.uuid4().hex[:8]}", json={"identifiers": {"phone": unique_phone()}}
    )
    path = f"/v1/customers/{created['customer']['id']}/preferences"
    for body, field in (
        ({"preferences": {"spam": {"order": ["sms"]}}}, "preferences.spam"),
        ({"preferences": {"service": {"order": ["pigeon"]}}}, "preferences.service.order[0]"),
        ({"preferences": {"service": {"order": ["sms", "sms"]}}}, "preferences.service.order"),
    ):
        status, reply = await stack.api("PUT", path, json=body)
        assert status == 422, reply
        assert reply["error"]["field"] == field
    status, _ = await stack.api("PUT", "/v1/customers/cus_0_NOPE/preferences", json={"preferences": {}})
    assert status == 404


async def _entries(stack: Stack, customer_id: str) -> list | None:
    return (await stack.thread(customer_id))["entries"] or None
