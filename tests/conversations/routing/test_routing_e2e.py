"""Routing through the whole stack: API -> shard actor -> decision -> simulator -> fallback.

On a branch where only SMS has a sender, the other channels show up in decisions as
``channel_unavailable``; where the decision's chain holds another channel (after the channel
adapters are merged), the assertions follow the chain the decision reports.
"""

from __future__ import annotations

import asyncio
import time

import ray
from redis.asyncio import Redis

from conversations.codec import encode
from conversations.models import Channel
from conversations.preferences import Preferences, TypePreference
from conversations.sharding import shard_for_customer
from conversations.store import Keys
from tests.support.shards import settle
from tests.support.stack import Stack, eventually, unique_phone


async def _record(stack: Stack, message_id: str) -> dict | None:
    status, body = await stack.api("GET", f"/v1/messages/{message_id}")
    if status == 404:
        return None
    assert status == 200, body
    return body


async def _send(stack: Stack, phone: str, message_type: str, body: str) -> str:
    status, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "body": body, "type": message_type}
    )
    assert status == 202, accepted
    return accepted["id"]


async def _customer(stack: Stack, phone: str) -> str:
    """Create the customer the way customers arrive: they text us."""
    result = await stack.simulator("POST", "/simulator/inbound", json={"from": phone, "body": "hi"})
    assert result["gateway_status"] == 200
    return await eventually(lambda: stack.customer_id(phone))


def _daytime_zone() -> str:
    """A fixed-offset zone where it is around noon now, so quiet hours never interfere."""
    offset = 12 - time.gmtime().tm_hour  # -11 .. +12
    if offset == 0:
        return "UTC"
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # POSIX sign: Etc/GMT-9 is UTC+9


def _routing_events(thread: dict, message_id: str) -> list[dict]:
    return [e for e in thread["entries"] if e["kind"] == "routing" and e["message_id"] == message_id]


async def test_transactional_sms_is_chosen_and_the_decision_is_shown(stack: Stack) -> None:
    phone = unique_phone()
    message_id = await _send(stack, phone, "transactional", "Your code is 123456")

    async def delivered() -> dict | None:
        record = await _record(stack, message_id)
        return record if record and record["status"] == "delivered" else None

    record = await eventually(delivered)
    decision = record["routing"]["decision"]
    assert (decision["outcome"], decision["chosen"], decision["message_type"]) == (
        "send",
        "sms",
        "transactional",
    )
    assert decision["chain"][0]["channel"] == "sms" and decision["chain"][0]["success"] == "sent"
    chain = [step["channel"] for step in decision["chain"]]
    if "voice" not in chain:
        assert {
            "channel": "voice",
            "reason": "channel_unavailable",
            "detail": "no sender configured",
        } in decision["skipped"]
    (attempt,) = record["routing"]["attempts"]
    assert (attempt["id"], attempt["channel"], attempt["outcome"]) == (f"{message_id}-1", "sms", "succeeded")
    (sent,) = await stack.sent_to(phone)
    assert f"mid={message_id}-1" in sent["status_callback"]
    attempt_record = await _record(stack, attempt["id"])
    assert attempt_record is not None and attempt_record["parent_id"] == message_id
    thread = await stack.thread(record["customer_id"])
    events = _routing_events(thread, message_id)
    assert [e["event"] for e in events] == ["decided", "attempt", "succeeded"]
    assert events[0]["decision"]["chosen"] == "sms"


async def test_transactional_sms_30003_moves_on_along_the_chain(stack: Stack) -> None:
    phone = unique_phone()
    await stack.simulator(
        "POST", "/simulator/fail", json={"error_code": 30003, "status": "undelivered", "to": phone}
    )
    message_id = await _send(stack, phone, "transactional", "Your code is 654321")

    async def settled() -> dict | None:
        record = await _record(stack, message_id)
        if record is None:
            return None
        moved_on = len(record["routing"]["attempts"]) > 1
        return record if moved_on or record["routing"]["state"] == "exhausted" else None

    record = await eventually(settled, timeout=20)
    decision = record["routing"]["decision"]
    chain = [step["channel"] for step in decision["chain"]]
    attempts = record["routing"]["attempts"]
    assert attempts[0]["channel"] == "sms" and attempts[0]["error_code"] == "30003"
    if "voice" in chain:
        assert [a["channel"] for a in attempts] == ["sms", "voice"]
    else:
        # No voice sender here: the decision says so, and the chain ends failed with SMS's code.
        assert {
            "channel": "voice",
            "reason": "channel_unavailable",
            "detail": "no sender configured",
        } in decision["skipped"]
        assert record["routing"]["state"] == "exhausted"
        assert (record["status"], record["error_code"]) == ("undelivered", "30003")
        thread = await stack.thread(record["customer_id"])
        # "sent" met the SMS step's success condition; the later 30003 still ends the chain.
        assert [e["event"] for e in _routing_events(thread, message_id)] == [
            "decided",
            "attempt",
            "succeeded",
            "exhausted",
        ]
    assert len(await stack.sent_to(phone)) == 1


async def test_opted_out_everywhere_fails_before_any_provider(stack: Stack) -> None:
    phone = unique_phone()
    customer_id = await _customer(stack, phone)
    redis = Redis.from_url(stack.config.redis_url)
    try:
        prefs = Preferences(by_type={"service": TypePreference(opted_out=(Channel.SMS, Channel.WHATSAPP))})
        await redis.set(Keys(stack.config.key_prefix).preferences(customer_id), encode(prefs))
    finally:
        await redis.aclose()
    message_id = await _send(stack, phone, "service", "Your order shipped")

    async def failed() -> dict | None:
        record = await _record(stack, message_id)
        return record if record and record["status"] == "failed" else None

    record = await eventually(failed)
    assert record["error_code"] == "opted_out"
    assert record["routing"]["decision"]["outcome"] == "refuse"
    assert {s["reason"] for s in record["routing"]["decision"]["skipped"]} == {"opted_out"}
    assert record["routing"]["attempts"] == []
    assert await stack.sent_to(phone) == []


async def test_frequency_cap_stops_the_fourth_marketing_message(stack: Stack) -> None:
    phone = unique_phone()
    customer_id = await _customer(stack, phone)
    keys = Keys(stack.config.key_prefix)
    redis = Redis.from_url(stack.config.redis_url)
    try:
        # This customer asked for offers by SMS, and lives where it is daytime now.
        prefs = Preferences(by_type={"marketing": TypePreference(order=(Channel.SMS,))})
        await redis.set(keys.preferences(customer_id), encode(prefs))
        await redis.hset(keys.customer(customer_id), "timezone", _daytime_zone())
    finally:
        await redis.aclose()
    ids = [await _send(stack, phone, "marketing", f"Offer {n}") for n in range(4)]

    async def all_settled() -> list[dict] | None:
        records = [await _record(stack, mid) for mid in ids]
        done = all(r and r["status"] in ("delivered", "failed") for r in records)
        return records if done else None  # type: ignore[return-value]

    records = await eventually(all_settled, timeout=20)
    assert [r["status"] for r in records] == ["delivered", "delivered", "delivered", "failed"]
    assert [r["channel"] for r in records[:3]] == ["sms"] * 3
    assert records[3]["error_code"] == "frequency_cap"
    assert records[3]["routing"]["decision"]["hold"] == "frequency_cap"
    assert sorted(m["body"] for m in await stack.sent_to(phone)) == ["Offer 0", "Offer 1", "Offer 2"]


async def test_a_pending_fallback_timer_fires_once_after_the_actor_restarts(stack: Stack) -> None:
    phone = unique_phone()
    # The provider takes the SMS and then goes quiet: no "sent" within the step's 30 s.
    await stack.simulator("POST", "/simulator/fail", json={"silent": True, "to": phone})
    message_id = await _send(stack, phone, "transactional", "Your code is 111222")

    async def queued() -> dict | None:
        record = await _record(stack, message_id)
        attempts = record["routing"]["attempts"] if record else []
        return record if attempts and attempts[0]["status"] == "queued" else None

    record = await eventually(queued, timeout=20)
    shard = shard_for_customer(record["customer_id"], stack.config.slot_map())
    assert shard is not None
    started = record["routing"]["attempts"][0]
    keys = Keys(stack.config.key_prefix)
    redis = Redis.from_url(stack.config.redis_url)
    try:
        assert await redis.zscore(keys.timers(shard), f"route:{started['id']}:timeout") is not None
        ray.kill(stack.actors[shard], no_restart=False)  # Ray restarts it; the timer is in Redis
        assert await asyncio.wait_for(stack.actors[shard].ping.remote(), 60) == shard

        async def timed_out() -> dict | None:
            current = await _record(stack, message_id)
            return (
                current if current and current["routing"]["attempts"][0]["outcome"] == "timed_out" else None
            )

        await eventually(timed_out, timeout=90, interval=0.5)
        # The timeout has fired and its timer is gone, so it cannot fire later: once the shard has
        # applied what is on its stream, a second firing would show in the thread.
        assert await redis.zscore(keys.timers(shard), f"route:{started['id']}:timeout") is None
        await settle(stack, shard)
        record = await _record(stack, message_id)
        assert record is not None
        thread = await stack.thread(record["customer_id"])
        events = [e["event"] for e in _routing_events(thread, message_id)]
        assert events.count("timeout") == 1
        chain = [step["channel"] for step in record["routing"]["decision"]["chain"]]
        attempts = record["routing"]["attempts"]
        if "voice" in chain:
            assert [a["channel"] for a in attempts] == ["sms", "voice"]  # the fallback, exactly once
        else:
            assert [a["channel"] for a in attempts] == ["sms"]
            assert record["routing"]["state"] == "exhausted"
            assert events == ["decided", "attempt", "timeout", "exhausted"]
        assert await redis.zscore(keys.timers(shard), f"route:{started['id']}:timeout") is None
        assert len(await stack.sent_to(phone)) == 1
    finally:
        await redis.aclose()


async def test_a_campaign_budget_caps_spend(stack: Stack) -> None:
    phone = unique_phone()
    campaign = f"spring-{unique_phone()[-6:]}"

    async def send(budget: float) -> str:
        status, accepted = await stack.api(
            "POST",
            "/v1/messages",
            json={
                "to": {"phone": phone},
                "body": "Sale",
                "type": "transactional",
                "campaign": {"id": campaign, "budget": budget},
            },
        )
        assert status == 202, accepted
        return accepted["id"]

    first = await send(0.01)  # one US SMS (0.0079) fits

    async def sent() -> dict | None:
        record = await _record(stack, first)
        return record if record and record["routing"]["attempts"] else None

    await eventually(sent)
    second = await send(0.01)  # the second would take the campaign past its cap

    async def refused() -> dict | None:
        record = await _record(stack, second)
        return record if record and record["status"] == "failed" else None

    record = await eventually(refused)
    skipped = {s["channel"]: s["reason"] for s in record["routing"]["decision"]["skipped"]}
    assert skipped["sms"] == "too_expensive"
    redis = Redis.from_url(stack.config.redis_url)
    try:
        spent = float(await redis.hget(Keys(stack.config.key_prefix).campaign(campaign), "spent"))
    finally:
        await redis.aclose()
    assert abs(spent - 0.0079) < 1e-9
    assert len(await stack.sent_to(phone)) == 1


async def test_a_negative_campaign_budget_is_a_422_naming_the_field(stack: Stack) -> None:
    status, body = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": unique_phone()}, "body": "x", "campaign": {"id": "c", "budget": -1}},
    )
    assert status == 422
    assert body["error"]["field"] == "campaign.budget"
