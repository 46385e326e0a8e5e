"""The segments participant, driven through a shard's batch processor against real Redis (no Ray)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from actors.streams import ensure_group, new_batch, pending_batches
from conversations import merge
from conversations.codec import encode
from conversations.customer_hash import attribute_field, encode_attribute
from conversations.ids import new_message_id
from conversations.journeys.definition import load_source, parse_definition
from conversations.journeys.registry import publish as publish_journey
from conversations.models import Channel, EventReceived, InboundMessage, SegmentBackfill
from conversations.normalize import email_identifier, phone_identifier
from conversations.participants import build_processor
from conversations.segments import registry
from conversations.segments.definition import parse_segment
from conversations.segments.engine import decode_facts, timer_id
from conversations.slots import DEFAULT_SLOTS, default_slot_map
from conversations.store import INGEST_FIELD, Keys
from conversations.thread import ThreadReader
from conversations.timers import TimerWheel
from tests.support.stack import unique_phone

DAY = 86400.0
ONE_SHARD = default_slot_map(DEFAULT_SLOTS, 1)
EXAMPLES = Path(__file__).resolve().parents[3] / "segments" / "examples"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _feed(redis: Redis, keys: Keys, *entries: Any) -> list:
    stream = keys.ingest(0)
    await ensure_group(redis, stream)
    for entry in entries:
        await redis.xadd(stream, {INGEST_FIELD: encode(entry)})
    return await new_batch(redis, stream, "shard-0", 1000, 100)


async def _define(
    redis: Redis, keys: Keys, source: dict[str, Any], now: float = T0
) -> registry.PublishedSegment:
    segment = parse_segment(source)
    await registry.check_publishable(redis, keys, segment)
    return await registry.publish(redis, keys, segment, source, now)


def _event(phone: str, name: str, at: float, **properties: Any) -> EventReceived:
    return EventReceived(new_message_id(), name, at, at, phone_identifier(phone), properties)


async def _members(redis: Redis, keys: Keys, name: str) -> list[str]:
    return [m.decode() for m in await redis.zrange(keys.segment_members(0, name), 0, -1)]


async def _count(redis: Redis, keys: Keys, name: str) -> int:
    return await registry.count(redis, keys, name, 1)


async def _customer(redis: Redis, keys: Keys, phone: str) -> str:
    found = await ThreadReader(redis, keys).find_customer_id(phone_identifier(phone))
    assert found is not None
    return found


async def test_an_event_makes_the_customer_a_member_in_the_same_batch(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    await _define(
        redis, keys, {"name": "buyers", "rule": {"event": "purchase_completed", "where": {"plan": "pro"}}}
    )
    await _define(redis, keys, {"name": "browsers", "rule": {"event": "page_viewed"}})
    phone, other = unique_phone(), unique_phone()
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=Clock(T0))
    batch = await _feed(
        redis,
        keys,
        _event(phone, "purchase_completed", T0, plan="pro"),
        _event(other, "purchase_completed", T0, plan="free"),
    )
    await processor.process(batch)
    customer = await _customer(redis, keys, phone)
    assert await _members(redis, keys, "buyers") == [customer]
    assert await _count(redis, keys, "buyers") == 1
    assert await _members(redis, keys, "browsers") == [] and await _count(redis, keys, "browsers") == 0
    # Entering is an event applied next, like a backend's: it joins the thread.
    await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 100, 100))
    page = await ThreadReader(redis, keys).page(customer, None, 50)
    logged = [(e.name, e.properties) for e in page.entries if e.kind == "event"]
    assert ("segment_entered", {"segment": "buyers", "version": 1}) in logged


async def test_a_window_flips_membership_through_its_timer(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    rule = {"not": {"engagement": "replied", "channel": "sms", "within": "21d"}}
    await _define(redis, keys, {"name": "quiet", "rule": {"all": [{"event": "signed_up"}, rule]}})
    phone = unique_phone()
    clock = Clock(T0)
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=clock)
    reply = InboundMessage(Channel.SMS, "twilio", "SM1", phone_identifier(phone), "+15005550006", "hi", T0)
    await processor.process(await _feed(redis, keys, _event(phone, "signed_up", T0), reply))
    customer = await _customer(redis, keys, phone)
    assert await _members(redis, keys, "quiet") == []
    due = await redis.zscore(keys.timers(0), timer_id(customer))
    assert due == T0 + 21 * DAY
    # Nothing is due a second early; at the due time the timer's entry flips the membership.
    wheel = TimerWheel(redis, keys, 0)
    assert await wheel.fire_due(T0 + 21 * DAY - 1) == 0
    clock.now = T0 + 21 * DAY
    assert await wheel.fire_due(clock.now) == 1
    await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 100, 100))
    assert await _members(redis, keys, "quiet") == [customer]
    assert await _count(redis, keys, "quiet") == 1
    facts = decode_facts(await redis.get(keys.segment_facts(customer)))
    assert facts.timer_due is None and await redis.zscore(keys.timers(0), timer_id(customer)) is None
    # A new reply takes them out again, in the batch that applies it.
    clock.now += 60
    reply = InboundMessage(
        Channel.SMS, "twilio", "SM2", phone_identifier(phone), "+15005550006", "back", clock.now
    )
    await processor.process(await _feed(redis, keys, reply))
    assert await _members(redis, keys, "quiet") == [] and await _count(redis, keys, "quiet") == 0


async def test_a_segment_defined_later_is_backfilled_over_existing_customers(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    phones = [unique_phone() for _ in range(5)]
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=Clock(T0))
    events = [_event(p, "purchase_completed", T0 - i * DAY) for i, p in enumerate(phones)]
    await processor.process(await _feed(redis, keys, *events))
    await _define(redis, keys, {"name": "recent", "rule": {"event": "purchase_completed", "within": "2d12h"}})
    assert not await registry.backfilled(redis, keys, "recent", 1, 1)
    await _feed(redis, keys)  # the group exists
    await redis.xadd(keys.ingest(0), {INGEST_FIELD: encode(SegmentBackfill("recent", 1))})
    while not await registry.backfilled(redis, keys, "recent", 1, 1):
        await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 100, 100))
    expected = sorted([await _customer(redis, keys, p) for p in phones[:3]])
    assert sorted(await _members(redis, keys, "recent")) == expected
    assert await _count(redis, keys, "recent") == 3


async def test_a_batch_replayed_after_a_crash_keeps_counts_equal_to_members(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    await _define(
        redis, keys, {"name": "active", "rule": {"event": "login", "count": {"op": "gte", "value": 2}}}
    )
    phones = [unique_phone() for _ in range(4)]
    entries = [_event(p, "login", T0 + i) for p in phones for i in range(2)]
    await _feed(redis, keys, *entries)  # read by an actor that then dies before EXEC
    pending = [b async for b in pending_batches(redis, keys.ingest(0), "shard-0", 100)]
    assert len(pending) == 1
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=Clock(T0 + 10))
    await processor.process(pending[0])
    # A crash after EXEC: the same ids come back with their fields gone.
    await processor.process([(stream_id, {}) for stream_id, _ in pending[0]])
    members = await _members(redis, keys, "active")
    assert len(members) == 4 and await _count(redis, keys, "active") == 4


async def test_entering_a_segment_starts_a_journey(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    await _define(redis, keys, {"name": "vips", "rule": {"attribute": "custom.vip", "value": True}})
    journey = load_source(
        """
name: vip_welcome
trigger: {event: segment_entered, filter: [{property: segment, op: eq, value: vips}]}
steps:
  - {id: hello, type: send, channel: sms, message_type: marketing, body: "Welcome, VIP"}
""",
        "yaml",
    )
    await publish_journey(redis, keys, parse_definition(journey), journey, T0)
    phone = unique_phone()
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=Clock(T0))
    await processor.process(await _feed(redis, keys, _event(phone, "signed_up", T0)))
    customer = await _customer(redis, keys, phone)
    assert await _members(redis, keys, "vips") == []
    # A profile upsert outside the batch is noticed at the customer's next entry.
    await redis.hset(keys.customer(customer), attribute_field("custom.vip"), encode_attribute(True, T0))
    await processor.process(await _feed(redis, keys, _event(phone, "page_viewed", T0 + 1)))
    assert await _members(redis, keys, "vips") == [customer]
    await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 100, 100))
    assert "vip_welcome" in {k.decode() for k in await redis.hkeys(keys.journey_entered(customer))}


async def test_a_merge_removes_the_losers_memberships_and_reevaluates_the_winner(
    env: tuple[Redis, Keys],
) -> None:
    redis, keys = env
    await _define(redis, keys, {"name": "buyers", "rule": {"event": "purchase_completed"}})
    await _define(redis, keys, {"name": "repeat", "rule": {"event": "purchase_completed", "count": 2}})
    winner_phone, loser_phone = unique_phone(), unique_phone()
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=Clock(T0))
    events = [
        _event(winner_phone, "purchase_completed", T0),
        _event(loser_phone, "purchase_completed", T0 + 1),
    ]
    await processor.process(await _feed(redis, keys, *events))
    winner, loser = await _customer(redis, keys, winner_phone), await _customer(redis, keys, loser_phone)
    assert sorted(await _members(redis, keys, "buyers")) == sorted([winner, loser])
    assert await _members(redis, keys, "repeat") == []
    await merge.hand_over(redis, keys, loser, winner, 0)
    assert await _members(redis, keys, "buyers") == [winner] and await _count(redis, keys, "buyers") == 1
    await merge.merge_into(redis, keys, winner, loser, T0 + 5, 0)
    await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 100, 100))
    assert await _members(redis, keys, "repeat") == [winner] and await _count(redis, keys, "repeat") == 1
    assert await _members(redis, keys, "buyers") == [winner] and await _count(redis, keys, "buyers") == 1
    assert await redis.get(keys.segment_facts(loser)) is None


async def test_the_shipped_examples_load_in_reference_order_and_re_engagement_flips_by_time(
    env: tuple[Redis, Keys],
) -> None:
    redis, keys = env
    published = await registry.publish_directory(redis, keys, EXAMPLES, 1, T0)
    assert sorted(p.name for p in published) == [
        "experts",
        "new_users",
        "newsletter_main",
        "paying",
        "re_engagement",
    ]
    assert [p.name for p in published].index("re_engagement") < [p.name for p in published].index(
        "newsletter_main"
    )
    again = await registry.publish_directory(redis, keys, EXAMPLES, 1, T0 + 1)
    assert not any(p.changed for p in again)  # an unchanged folder starts nothing
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    clock = Clock(T0)
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=clock)
    signup = EventReceived("evt_signup", "signed_up", T0, T0, email_identifier(email))
    await processor.process(await _feed(redis, keys, signup))
    customer = (await ThreadReader(redis, keys).find_customer_id(email_identifier(email))) or ""
    # Drain the backfill chunks the folder queued (this customer is new, so they change nothing).
    while await redis.xlen(keys.ingest(0)):
        await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 100, 100))
    assert await _members(redis, keys, "newsletter_main") == [customer]
    assert await _members(redis, keys, "new_users") == [customer]
    assert await _members(redis, keys, "re_engagement") == []
    # 21 days later, with no email opened: moved from the main list to re-engagement by a timer.
    clock.now = T0 + 21 * DAY
    wheel = TimerWheel(redis, keys, 0)
    assert await wheel.fire_due(clock.now) == 1
    while await redis.xlen(keys.ingest(0)):
        await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 100, 100))
    assert await _members(redis, keys, "re_engagement") == [customer]
    assert await _members(redis, keys, "newsletter_main") == []
    assert await _members(redis, keys, "new_users") == []
    assert (
        await _count(redis, keys, "newsletter_main") == 0 and await _count(redis, keys, "re_engagement") == 1
    )
