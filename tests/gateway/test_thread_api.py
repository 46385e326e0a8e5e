"""Reading the one thread: filters by channel, direction and time, and the NDJSON export."""

from __future__ import annotations

import json
import time

from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone
from tests.support.wait import clock_passes


async def _conversation(stack: Stack) -> tuple[str, float]:
    """Two inbound texts around one outbound reply (delivered), with a time mark in between."""
    phone = unique_phone()
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "first"))
    customer_id = await eventually(lambda: stack.customer_id(phone))
    first = (await eventually(lambda: _entries(stack, customer_id, 1)))[0]
    await clock_passes(first["at"])  # the mark falls after the first text's receive time
    mark = time.time()
    _, sent = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "channel": "sms", "body": "reply"}
    )

    async def delivered() -> bool:
        status, record = await stack.api("GET", f"/v1/messages/{sent['id']}")
        return status == 200 and record["status"] == "delivered"

    await eventually(delivered)
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "second"))

    async def second_arrived() -> bool:
        inbound = await stack.thread(customer_id, direction="inbound")
        return len(inbound["entries"]) == 2

    await eventually(second_arrived)
    return customer_id, mark


async def _entries(stack: Stack, customer_id: str, at_least: int) -> list[dict] | None:
    entries = (await stack.thread(customer_id, limit="500"))["entries"]
    return entries if len(entries) >= at_least else None


async def test_filters_by_direction_channel_and_time(stack: Stack) -> None:
    customer_id, mark = await _conversation(stack)
    inbound = await stack.thread(customer_id, direction="inbound")
    assert [e["body"] for e in inbound["entries"]] == ["first", "second"]
    outbound = await stack.thread(customer_id, direction="outbound")
    assert outbound["entries"][0]["kind"] == "message"
    assert {e.get("status") for e in outbound["entries"] if e["kind"] == "status"} >= {"sent", "delivered"}
    since = await stack.thread(customer_id, since=str(mark))
    assert "first" not in [e.get("body") for e in since["entries"]]
    until = await stack.thread(customer_id, until=str(mark))
    assert [e.get("body") for e in until["entries"]] == ["first"]
    assert (await stack.thread(customer_id, channel="whatsapp"))["entries"] == []
    assert len((await stack.thread(customer_id, channel="sms,whatsapp", limit="500"))["entries"]) >= 6
    # Filters and paging together: one inbound message per page.
    first = await stack.thread(customer_id, direction="inbound", limit="1")
    second = await stack.thread(customer_id, direction="inbound", limit="1", cursor=first["next_cursor"])
    assert [first["entries"][0]["body"], second["entries"][0]["body"]] == ["first", "second"]
    assert second.get("next_cursor") is None


async def test_ndjson_export_streams_the_whole_thread(stack: Stack) -> None:
    customer_id, _ = await _conversation(stack)
    headers = {**stack.auth, "Accept": "application/x-ndjson"}
    async with stack.http.get(
        f"{stack.gateway_url}/v1/customers/{customer_id}/thread", headers=headers
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/x-ndjson"
        lines = (await response.text()).strip().split("\n")
    entries = [json.loads(line) for line in lines]
    page = await stack.thread(customer_id, limit="500")
    assert entries == page["entries"]


async def test_bad_filters_are_422(stack: Stack) -> None:
    for params, field in (
        ({"channel": "fax"}, "channel"),
        ({"direction": "sideways"}, "direction"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "abc"}, "cursor"),
    ):
        status, body = await stack.api("GET", "/v1/customers/cus_0_X/thread", params=params)
        assert status == 422 and body["error"]["field"] == field, (params, body)
