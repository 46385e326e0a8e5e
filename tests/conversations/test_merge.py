"""Merging two customers: one ordered thread, newest attributes, redirects, nothing lost."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone
from tests.support.wait import clock_passes


async def _customer(stack: Stack, **identifiers: str) -> str:
    status, body = await stack.api(
        "PUT", f"/v1/customers/m-{uuid.uuid4().hex[:10]}", json={"identifiers": identifiers}
    )
    assert status == 201, body
    return body["customer"]["id"]


async def _say(stack: Stack, phone: str, body: str) -> None:
    response = await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, body))
    assert response.status == 200


async def _bodies(stack: Stack, customer_id: str, count: int) -> list[str]:
    async def probe() -> list[str] | None:
        entries = (await stack.thread(customer_id, limit="500"))["entries"]
        bodies = [e["body"] for e in entries if e["kind"] == "message"]
        return bodies if len(bodies) >= count else None

    return await eventually(probe, timeout=30)


async def _received_at(stack: Stack, customer_id: str, body: str) -> float:
    """The receive time of the customer's message ``body``, once it is in the thread."""

    async def landed() -> float | None:
        entries = (await stack.thread(customer_id, limit="500"))["entries"]
        return next((e["at"] for e in entries if e["kind"] == "message" and e["body"] == body), None)

    return await eventually(landed, timeout=30, what=f"{body!r} in {customer_id}'s thread")


async def test_merge_interleaves_threads_keeps_newest_attributes_and_redirects(stack: Stack) -> None:
    phone_a, phone_b = unique_phone(), unique_phone()
    a = await _customer(stack, phone=phone_a)
    b = await _customer(stack, phone=phone_b)
    for body, phone in (("a1", phone_a), ("b1", phone_b), ("a2", phone_a), ("b2", phone_b)):
        await _say(stack, phone, body)
        # Distinct receive times: the next message is only sent once this one has landed and the
        # clock has moved past its receive time.
        received = await _received_at(stack, a if phone == phone_a else b, body)
        await clock_passes(received)
    assert await _bodies(stack, a, 2) == ["a1", "a2"]
    assert await _bodies(stack, b, 2) == ["b1", "b2"]
    ext_a = next(
        i["value"]
        for i in (await stack.api("GET", f"/v1/customers/{a}"))[1]["identifiers"]
        if i["kind"] == "external_id"
    )
    ext_b = next(
        i["value"]
        for i in (await stack.api("GET", f"/v1/customers/{b}"))[1]["identifiers"]
        if i["kind"] == "external_id"
    )
    await stack.api(
        "PUT", f"/v1/customers/{ext_a}", json={"attributes": {"name": "Old Name", "locale": "fr-FR"}}
    )
    await clock_passes(time.time())  # the second upsert's values are the newer ones
    await stack.api(
        "PUT", f"/v1/customers/{ext_b}", json={"attributes": {"name": "New Name", "timezone": "Europe/Paris"}}
    )

    status, result = await stack.api("POST", f"/v1/customers/{a}/merge", json={"other": b})
    assert status == 200, result
    assert (result["winner"], result["loser"]) == (a, b)
    assert result["conflicts"] == [
        {"attribute": "name", "kept": "New Name", "discarded": "Old Name", "kept_from": b}
    ]
    assert await _bodies(stack, a, 4) == ["a1", "b1", "a2", "b2"]

    _, profile = await stack.api("GET", f"/v1/customers/{a}")
    assert profile["attributes"] == {"name": "New Name", "locale": "fr-FR", "timezone": "Europe/Paris"}
    assert {i["value"] for i in profile["identifiers"]} >= {phone_a, phone_b, ext_a, ext_b}
    assert profile["merged_from"] == [b]
    # The loser's id and identifiers now lead to the winner.
    _, via_old_id = await stack.api("GET", f"/v1/customers/{b}")
    assert via_old_id["id"] == a
    assert await stack.customer_id(phone_b) == a
    # Idempotent: the same request again answers the same result.
    status, again = await stack.api("POST", f"/v1/customers/{a}/merge", json={"other": b})
    assert status == 200 and again == result
    # New traffic from the loser's phone lands in the winner's thread.
    await _say(stack, phone_b, "after merge")
    assert (await _bodies(stack, a, 5))[-1] == "after merge"


async def test_merge_racing_inbound_traffic_loses_nothing(stack: Stack) -> None:
    phone_a, phone_b = unique_phone(), unique_phone()
    a = await _customer(stack, phone=phone_a)
    b = await _customer(stack, phone=phone_b)
    sent = [f"{who}{n}" for n in range(40) for who in ("a", "b")]

    quarter_sent = asyncio.Event()

    async def traffic() -> None:
        for n, body in enumerate(sent, 1):
            await _say(stack, phone_a if body[0] == "a" else phone_b, body)
            if n == len(sent) // 4:
                quarter_sent.set()

    async def merge_midway() -> dict:
        await quarter_sent.wait()  # the merge starts with three quarters of the traffic to come
        status, result = await stack.api("POST", f"/v1/customers/{a}/merge", json={"other": b})
        assert status == 200, result
        return result

    await asyncio.gather(traffic(), merge_midway())
    bodies = await _bodies(stack, a, len(sent))
    assert sorted(bodies) == sorted(sent)  # every message, exactly once
    # Entries keep their receive time; a message in flight during the merge may take one more
    # shard hop than the next one and land a few places later (README: merge semantics).
    entries = [e for e in (await stack.thread(a, limit="500"))["entries"] if e["kind"] == "message"]
    by_time = sorted(entries, key=lambda e: e["at"])
    assert [e["body"] for e in by_time if e["body"][0] == "b"] == [x for x in sent if x[0] == "b"]
    assert [e["body"] for e in by_time if e["body"][0] == "a"] == [x for x in sent if x[0] == "a"]


async def test_outbound_statuses_of_the_loser_follow_it_to_the_winner(stack: Stack) -> None:
    phone_a, phone_b = unique_phone(), unique_phone()
    a = await _customer(stack, phone=phone_a)
    b = await _customer(stack, phone=phone_b)
    await stack.api("POST", f"/v1/customers/{a}/merge", json={"other": b})
    _, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone_b}, "channel": "sms", "body": "hi b"}
    )

    async def delivered() -> dict | None:
        status, record = await stack.api("GET", f"/v1/messages/{accepted['id']}")
        return record if status == 200 and record["status"] == "delivered" else None

    record = await eventually(delivered)
    assert record["customer_id"] == a


async def test_bad_merges_are_refused(stack: Stack) -> None:
    a = await _customer(stack, phone=unique_phone())
    status, body = await stack.api("POST", f"/v1/customers/{a}/merge", json={"other": a})
    assert status == 422 and body["error"]["code"] == "same_customer"
    status, body = await stack.api("POST", f"/v1/customers/{a}/merge", json={"other": "cus_0_NOPE"})
    assert status == 404 and body["error"]["field"] == "other"
    status, body = await stack.api("POST", f"/v1/customers/{a}/merge", json={})
    assert status == 422 and body["error"]["field"] == "other"
