"""POST /v1/messages → shard → Twilio (simulator) → signed status callbacks → thread."""

from __future__ import annotations

from tests.support.stack import Stack, eventually, unique_phone


async def _message(stack: Stack, message_id: str) -> dict:
    """The message record; an accepted message is visible once its shard applied it."""
    status, body = await stack.api("GET", f"/v1/messages/{message_id}")
    if status == 404:
        return {"status": "not_yet_applied"}
    assert status == 200, body
    return body


async def test_outbound_reaches_the_provider_and_ends_delivered(stack: Stack) -> None:
    phone = unique_phone()
    status, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": phone}, "channel": "sms", "body": "Your order shipped", "type": "service"},
    )
    assert status == 202, accepted
    assert accepted["status"] == "accepted"
    message_id = accepted["id"]

    (sent,) = await eventually(lambda: stack.sent_to(phone))
    assert sent["body"] == "Your order shipped"
    assert sent["from"] == stack.config.twilio.from_number
    assert f"mid={message_id}" in sent["status_callback"]

    async def delivered() -> dict | None:
        record = await _message(stack, message_id)
        return record if record["status"] == "delivered" else None

    record = await eventually(delivered)
    assert record["provider_message_id"] == sent["sid"]
    assert record["segments"] == 1
    assert record["history"][0]["status"] == "accepted"
    assert {"queued", "sent", "delivered"} <= {h["status"] for h in record["history"]}

    customer_id = await stack.customer_id(phone)
    entries = (await stack.thread(customer_id))["entries"]
    message = next(e for e in entries if e["kind"] == "message")
    assert message["direction"] == "outbound" and message["status"] == "delivered"
    assert any(e["kind"] == "status" and e["status"] == "delivered" for e in entries)


async def test_simulated_30003_shows_failed_with_the_code(stack: Stack) -> None:
    phone = unique_phone()
    await stack.simulator(
        "POST", "/simulator/fail", json={"error_code": 30003, "status": "undelivered", "to": phone}
    )
    status, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "channel": "sms", "body": "Are you there?"}
    )
    assert status == 202

    async def undelivered() -> dict | None:
        record = await _message(stack, accepted["id"])
        return record if record["status"] == "undelivered" else None

    record = await eventually(undelivered)
    assert record["error_code"] == "30003"


async def test_provider_refusal_is_recorded_as_failed(stack: Stack) -> None:
    phone = unique_phone()
    await stack.simulator(
        "POST", "/simulator/fail", json={"error_code": 21610, "http_status": 400, "to": phone}
    )
    _, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "channel": "sms", "body": "promo"}
    )

    async def failed() -> dict | None:
        record = await _message(stack, accepted["id"])
        return record if record["status"] == "failed" else None

    record = await eventually(failed)
    assert record["error_code"] == "21610"
    assert await stack.sent_to(phone) == []


async def test_provider_5xx_is_retried_and_then_sent_once(stack: Stack) -> None:
    phone = unique_phone()
    await stack.simulator(
        "POST", "/simulator/fail", json={"error_code": 20500, "http_status": 503, "count": 2, "to": phone}
    )
    _, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "channel": "sms", "body": "retry"}
    )

    async def delivered() -> dict | None:
        record = await _message(stack, accepted["id"])
        return record if record["status"] == "delivered" else None

    await eventually(delivered, timeout=15)
    assert len(await stack.sent_to(phone)) == 1


async def test_reply_joins_the_same_thread_as_the_inbound(stack: Stack) -> None:
    phone = unique_phone()
    result = await stack.simulator(
        "POST", "/simulator/inbound", json={"from": phone, "body": "Where is my order?"}
    )
    assert result["gateway_status"] == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    _, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "channel": "sms", "body": "On its way!"}
    )

    async def both() -> list | None:
        entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "message"]
        return entries if len(entries) == 2 else None

    inbound, outbound = await eventually(both)
    assert (inbound["direction"], inbound["body"]) == ("inbound", "Where is my order?")
    assert (outbound["direction"], outbound["message_id"]) == ("outbound", accepted["id"])
