"""Journeys inside the shard's batch processor, against real Redis, with an injected clock (no Ray)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from actors.streams import ensure_group, new_batch
from conversations.codec import decode_message, decode_outbox_job, encode
from conversations.customer_hash import decode_attribute
from conversations.journeys import handoff
from conversations.journeys.definition import parse_definition
from conversations.journeys.instance import Instance, InstanceStatus, decode_instance
from conversations.journeys.registry import publish
from conversations.journeys.views import JourneyReader
from conversations.models import Channel, EventReceived, InboundMessage
from conversations.normalize import phone_identifier
from conversations.participants import build_processor
from conversations.participants.routing import RoutingSettings
from conversations.routing.policy import load_policy
from conversations.slots import DEFAULT_SLOTS, default_slot_map
from conversations.store import INGEST_FIELD, Keys
from conversations.thread import ThreadReader
from conversations.timers import TimerWheel
from tests.journeys_support import T0, example_source
from tests.support.stack import unique_phone

ONE_SHARD = default_slot_map(DEFAULT_SLOTS, 1)

QUESTION: dict[str, Any] = {
    "name": "question",
    "trigger": {"event": "asked"},
    "entry": {"rule": "always"},
    "steps": [
        {
            "id": "ask",
            "type": "send",
            "channel": "sms",
            "body": "Coming to {{ event.what }}? Reply YES or NO",
        },
        {"id": "wait_answer", "type": "wait", "reply": True, "timeout": "2h"},
        {
            "id": "answer",
            "type": "branch",
            "cases": [{"reply": ["yes"], "goto": "said_yes"}, {"outcome": ["timeout"], "goto": "no_answer"}],
            "default": "said_no",
        },
        {"id": "said_yes", "type": "update", "set": {"custom.answer": "yes"}, "next": "end"},
        {"id": "said_no", "type": "update", "set": {"custom.answer": "no"}, "next": "end"},
        {"id": "no_answer", "type": "update", "set": {"custom.answer": "silent"}},
    ],
}


class Env:
    """One private key space, one shard, a processor whose clock the test moves."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.now = T0
        # No provider answers in this environment: give routing's step timeouts room, so only
        # the journey's own timers come due while a test moves the clock by hours.
        policy = load_policy()
        slow = {
            c: msgspec.structs.replace(r, timeout_seconds=365 * 86400) for c, r in policy.channels.items()
        }
        routing = RoutingSettings(policy=msgspec.structs.replace(policy, channels=slow))
        self.processor = build_processor(redis, keys, 0, ONE_SHARD, clock=lambda: self.now, routing=routing)
        self.reader = ThreadReader(redis, keys)

    async def publish(self, raw: dict[str, Any]) -> None:
        await publish(self.redis, self.keys, parse_definition(raw), raw, self.now)

    async def feed(self, *entries: Any) -> None:
        for entry in entries:
            await self.redis.xadd(self.keys.ingest(0), {INGEST_FIELD: encode(entry)})
        await self.drain()

    async def drain(self) -> None:
        """Apply batches until the stream is empty (journey sends come back through it)."""
        stream = self.keys.ingest(0)
        await ensure_group(self.redis, stream)
        while batch := await new_batch(self.redis, stream, "shard-0", 1000, 5):
            await self.processor.process(batch)

    async def fire_timers(self, at: float) -> int:
        """The TimerWheel with an injected time: how tests skip hours without sleeping."""
        self.now = at
        fired = await TimerWheel(self.redis, self.keys, 0).fire_due(at)
        await self.drain()
        return fired

    async def journey_timers(self) -> int:
        """Pending timers other than routing's step timeouts."""
        members = await self.redis.zrange(self.keys.timers(0), 0, -1)
        return sum(1 for m in members if not m.startswith(b"route:"))

    async def customer_id(self, phone: str) -> str:
        found = await self.reader.find_customer_id(phone_identifier(phone))
        assert found is not None
        return found

    async def instances(self, customer_id: str) -> list[Instance]:
        ids = await self.redis.zrange(self.keys.journey_history(customer_id), 0, -1)
        blobs = await self.redis.mget([self.keys.journey_instance(i.decode()) for i in ids]) if ids else []
        return [decode_instance(b) for b in blobs if b]

    async def attribute(self, customer_id: str, name: str) -> Any:
        blob = await self.redis.hget(self.keys.customer(customer_id), f"attr:{name}")
        return decode_attribute(blob)[0] if blob else None

    async def outbox_bodies(self) -> list[tuple[str, str]]:
        raw = await self.redis.xrange(self.keys.outbox(0))
        return [(job.channel.value, job.body) for job in (decode_outbox_job(f[INGEST_FIELD]) for _, f in raw)]


@pytest.fixture
async def env(redis_url: str, key_prefix: str) -> AsyncIterator[Env]:
    keys = Keys(f"{key_prefix}:jrun-{uuid.uuid4().hex[:6]}")
    redis = Redis.from_url(redis_url)
    yield Env(redis, keys)
    async for key in redis.scan_iter(match=keys.pattern()):
        await redis.unlink(key)
    await redis.aclose()


def _event(phone: str, name: str, at: float, event_id: str | None = None, **properties: Any) -> EventReceived:
    return EventReceived(
        event_id or "evt_" + uuid.uuid4().hex, name, at, at, phone_identifier(phone), dict(properties)
    )


def _reply(phone: str, body: str, at: float, channel: Channel = Channel.SMS) -> InboundMessage:
    provider = "meta" if channel is Channel.WHATSAPP else "twilio"
    return InboundMessage(channel, provider, "ID" + uuid.uuid4().hex, phone_identifier(phone), "", body, at)


async def test_a_reply_on_whatsapp_reaches_the_journey_waiting_for_it(env: Env) -> None:
    await env.publish(QUESTION)
    phone = unique_phone()
    await env.feed(_event(phone, "asked", T0, what="the party"))
    customer_id = await env.customer_id(phone)
    assert await env.outbox_bodies() == [("sms", "Coming to the party? Reply YES or NO")]
    (instance,) = await env.instances(customer_id)
    assert instance.status is InstanceStatus.WAITING
    assert await env.journey_timers() == 1

    env.now = T0 + 600
    await env.feed(_reply(phone, "Yes please", T0 + 600, Channel.WHATSAPP))
    (instance,) = await env.instances(customer_id)
    assert instance.status is InstanceStatus.COMPLETED and instance.last_reply == "Yes please"
    assert await env.attribute(customer_id, "custom.answer") == "yes"
    assert await env.journey_timers() == 0  # the reply cancelled the timeout
    assert await env.redis.hlen(env.keys.journey_active(customer_id)) == 0
    # The event is in the customer's history, before the journey's message.
    page = await env.reader.page(customer_id, None, 10)
    assert [e.kind for e in page.entries][:2] == ["event", "message"]
    assert page.entries[0].name == "asked" and page.entries[0].properties == {"what": "the party"}


async def test_the_timeout_fires_through_the_timer_wheel_with_an_injected_time(env: Env) -> None:
    await env.publish(QUESTION)
    phone = unique_phone()
    await env.feed(_event(phone, "asked", T0, what="dinner"))
    customer_id = await env.customer_id(phone)
    assert await env.fire_timers(T0 + 3600) == 0  # not due yet
    assert await env.fire_timers(T0 + 2 * 3600) == 1
    (instance,) = await env.instances(customer_id)
    assert instance.status is InstanceStatus.COMPLETED and instance.last_wait == "timeout"
    assert await env.attribute(customer_id, "custom.answer") == "silent"
    assert await env.fire_timers(T0 + 10 * 3600) == 0  # fired once, gone


async def test_a_replayed_batch_enters_and_sends_once(env: Env) -> None:
    await env.publish(QUESTION)
    phone = unique_phone()
    stream = env.keys.ingest(0)
    await ensure_group(env.redis, stream)
    await env.redis.xadd(stream, {INGEST_FIELD: encode(_event(phone, "asked", T0, what="x"))})
    batch = await new_batch(env.redis, stream, "shard-0", 100, 5)
    await env.processor.process(batch)
    await env.processor.process([(sid, {}) for sid, _ in batch])  # the replay after a crash
    await env.drain()
    customer_id = await env.customer_id(phone)
    assert len(await env.instances(customer_id)) == 1
    assert len(await env.outbox_bodies()) == 1
    stats = await JourneyReader(env.redis, env.keys).stats("question")
    assert stats is not None and (stats.entered, stats.active) == (1, 1)
    assert [(s.id, s.sent) for s in stats.steps] == [("ask", 1)]


async def test_goal_mid_wait_converts_and_stats_add_up(env: Env) -> None:
    await env.publish(example_source("cart_abandonment"))
    phones = [unique_phone() for _ in range(3)]
    for phone in phones:
        await env.feed(_event(phone, "cart_abandoned", T0, cart_total=10, cart_id="c", item_count=1))
    env.now = T0 + 3600
    await env.feed(_event(phones[0], "purchase_completed", T0 + 3600, order_id="o"))
    await env.feed(_event(phones[1], "cart_emptied", T0 + 3600))
    (converted,) = await env.instances(await env.customer_id(phones[0]))
    assert converted.status is InstanceStatus.CONVERTED and converted.reason == "goal purchase_completed"
    assert await env.fire_timers(T0 + 4 * 3600 + 1) == 1  # only the third customer still waits
    # Outside the 24 h window the WhatsApp reminders went out as the routing policy's approved
    # marketing template; no purchase in 4 h sent the third customer the SMS step.
    assert [channel for channel, _ in await env.outbox_bodies()] == [
        "whatsapp",
        "whatsapp",
        "whatsapp",
        "sms",
    ]
    (third,) = await env.instances(await env.customer_id(phones[2]))
    assert [(s.channel, s.error) for s in third.sends] == [("whatsapp", ""), ("sms", "")]
    stats = await JourneyReader(env.redis, env.keys).stats("cart_abandonment")
    assert stats is not None
    assert (stats.entered, stats.active, stats.converted, stats.exited, stats.completed) == (3, 1, 1, 1, 0)
    # A second abandoned cart within 7 days does not re-enter (once_per 7d).
    await env.feed(_event(phones[2], "cart_abandoned", T0 + 5 * 3600, cart_total=5))
    assert len(await env.instances(await env.customer_id(phones[2]))) == 1


async def test_an_opted_out_customer_makes_the_send_fail_and_the_branch_sees_it(env: Env) -> None:
    await env.publish(
        {
            "name": "promo",
            "trigger": {"event": "browsed"},
            "steps": [
                {
                    "id": "offer",
                    "type": "send",
                    "channel": "sms",
                    "message_type": "marketing",
                    "body": "20% off",
                },
                {"id": "pause", "type": "wait", "duration": "10m"},
                {
                    "id": "check",
                    "type": "branch",
                    "cases": [{"outcome": ["failed"], "goto": "mark"}],
                    "default": "end",
                },
                {"id": "mark", "type": "update", "set": {"custom.unreachable": True}},
            ],
        }
    )
    phone = unique_phone()
    await env.feed(_reply(phone, "STOP", T0))  # opts out of SMS
    await env.feed(_event(phone, "browsed", T0 + 1))
    customer_id = await env.customer_id(phone)
    (instance,) = await env.instances(customer_id)
    assert instance.sends[0].outcomes == ["sent", "failed"]
    record = decode_message(await env.redis.get(env.keys.message(instance.sends[0].message_id)))
    assert record.error_code == "opted_out" and record.message_type == "marketing"
    await env.fire_timers(T0 + 601)
    assert await env.attribute(customer_id, "custom.unreachable") is True


async def test_handoff_pauses_until_the_console_hands_back(env: Env) -> None:
    await env.publish(example_source("support_ticket"))
    phone = unique_phone()
    await env.feed(_reply(phone, "my order never came", T0))
    await env.feed(_event(phone, "support_ticket_created", T0 + 1, ticket_id="T-9"))
    customer_id = await env.customer_id(phone)
    assert await handoff.automation_paused(env.redis, env.keys, customer_id)
    env.now = T0 + 60
    await env.feed(_reply(phone, "hello? anyone?", T0 + 60))  # the agent's conversation
    (instance,) = await env.instances(customer_id)
    assert instance.status is InstanceStatus.HANDED_OFF

    await handoff.release(env.redis, env.keys, ONE_SHARD, customer_id, T0 + 120, agent="agent-7")
    await env.drain()
    (instance,) = await env.instances(customer_id)
    assert instance.status is InstanceStatus.WAITING and instance.wait is not None
    assert instance.wait.step == "wait_for_answer"
    assert "handed back by agent-7" in [entry.what for entry in instance.log]
    assert not await handoff.automation_paused(env.redis, env.keys, customer_id)
    bodies = [body for _, body in await env.outbox_bodies()]
    assert bodies[-1] == "Is your issue (ticket T-9) resolved? Reply YES or NO."


async def test_a_console_that_only_flips_the_key_resumes_at_the_next_stimulus(env: Env) -> None:
    await env.publish(example_source("support_ticket"))
    phone = unique_phone()
    await env.feed(_reply(phone, "help", T0))
    await env.feed(_event(phone, "support_ticket_created", T0 + 1, ticket_id="T-10"))
    customer_id = await env.customer_id(phone)
    # The console's handback flips the conversation's automation switch (tl:conv:<id>).
    await env.redis.hset(env.keys.conversation(customer_id), "automation", "active")
    env.now = T0 + 101
    await env.feed(_reply(phone, "thanks, all good", T0 + 100))
    (instance,) = await env.instances(customer_id)
    # Resumed by the flipped key; the message that woke it does not answer the new question.
    assert instance.status is InstanceStatus.WAITING and instance.wait is not None
    assert instance.wait.step == "wait_for_answer"
    assert "handed back by console" in [entry.what for entry in instance.log]
    assert not await handoff.automation_paused(env.redis, env.keys, customer_id)


async def test_running_instances_keep_their_version(env: Env) -> None:
    await env.publish(QUESTION)
    phone = unique_phone()
    await env.feed(_event(phone, "asked", T0, what="v1"))
    changed = {
        **QUESTION,
        "steps": [dict(QUESTION["steps"][0], body="v2 {{ event.what }}"), *QUESTION["steps"][1:]],
    }
    await env.publish(changed)
    other = unique_phone()
    await env.feed(_event(other, "asked", T0 + 1, what="new"))
    (old,) = await env.instances(await env.customer_id(phone))
    (new,) = await env.instances(await env.customer_id(other))
    assert (old.version, new.version) == (1, 2)
    assert [body for _, body in await env.outbox_bodies()] == ["Coming to v1? Reply YES or NO", "v2 new"]
    await env.feed(_reply(phone, "no", T0 + 5))
    assert await env.attribute(old.customer_id, "custom.answer") == "no"
