"""Routing inside the shard's batch processor, on real Redis with an injected clock (no Ray).

Provider replies are fed as the entries the gateway and the outbox sender would write
(SendOutcome, StatusUpdate), so every channel of the chain can be exercised here, including
the ones whose senders live on other branches.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from redis.asyncio import Redis

from actors.outbox import OutboxSender
from actors.streams import ensure_group, new_batch
from channels.attempt_renderer import AttemptRenderer
from channels.sms_twilio import TwilioSmsSender
from channels.templates import TemplateRenderer
from conversations.batch.processor import BatchProcessor
from conversations.codec import decode_message, decode_outbox_job, decode_thread_event, encode
from conversations.ids import new_message_id
from conversations.models import (
    Channel,
    InboundMessage,
    MessageRecord,
    MessageStatus,
    OutboundRequest,
    OutboxJob,
    RichCard,
    RoutingLogged,
    SendOutcome,
    SkipReason,
    StatusUpdate,
)
from conversations.normalize import phone_identifier
from conversations.participants import build_processor
from conversations.participants.routing import RoutingSettings
from conversations.preferences import Preferences, TypePreference
from conversations.pricing import DEFAULT_PRICES
from conversations.routing.engagement import HALF_LIFE_SECONDS, decayed, scores_from_hash
from conversations.slots import DEFAULT_SLOTS, default_slot_map
from conversations.store import INGEST_FIELD, Keys
from conversations.timers import TimerWheel
from tests.support.stack import Stack, eventually, unique_phone

ONE_SHARD = default_slot_map(DEFAULT_SLOTS, 1)

T0 = 1_750_000_000.0


@dataclass
class Shard:
    """One shard's processor and timers over a private key prefix, with a hand-driven clock."""

    redis: Redis
    keys: Keys
    processor: BatchProcessor
    now: float = T0

    async def feed(self, *entries) -> None:
        stream = self.keys.ingest(0)
        await ensure_group(self.redis, stream)
        for entry in entries:
            await self.redis.xadd(stream, {INGEST_FIELD: encode(entry)})
        await self.processor.process(await new_batch(self.redis, stream, "shard-0", 1000, 100))

    async def advance(self, seconds: float) -> int:
        """Move the clock on and apply whatever timers came due."""
        self.now += seconds
        fired = await TimerWheel(self.redis, self.keys, 0).fire_due(self.now)
        if fired:
            await self.processor.process(
                await new_batch(self.redis, self.keys.ingest(0), "shard-0", 1000, 100)
            )
        return fired

    async def message(self, message_id: str) -> MessageRecord:
        return decode_message(await self.redis.get(self.keys.message(message_id)))

    async def jobs(self) -> list[OutboxJob]:
        return [decode_outbox_job(f[INGEST_FIELD]) for _, f in await self.redis.xrange(self.keys.outbox(0))]

    async def routing_events(self, customer_id: str) -> list[RoutingLogged]:
        raw = await self.redis.xrange(self.keys.thread(customer_id))
        events = [decode_thread_event(f[INGEST_FIELD]) for _, f in raw]
        return [e for e in events if isinstance(e, RoutingLogged)]

    async def request(self, phone: str, message_type: str, body: str = "Your order shipped") -> MessageRecord:
        message_id = new_message_id()
        await self.feed(OutboundRequest(message_id, phone_identifier(phone), body, message_type, self.now))
        return await self.message(message_id)


def _make_shard(redis: Redis, keys: Keys, channels=None, render=None) -> Shard:
    shard = Shard(redis, keys, None)  # type: ignore[arg-type]
    routing = RoutingSettings(channels=channels, render=render)
    shard.processor = build_processor(redis, keys, 0, ONE_SHARD, clock=lambda: shard.now, routing=routing)
    return shard


@pytest.fixture
def shard(env: tuple[Redis, Keys]) -> Shard:
    """Every channel has a sender (as after the channel branches are merged)."""
    return _make_shard(*env, channels=frozenset(Channel))


def _outcome(job: OutboxJob, provider: str, status: MessageStatus, at: float, code: str = "") -> SendOutcome:
    return SendOutcome(
        job.message_id,
        job.customer_id,
        provider,
        status,
        at,
        provider_message_id=f"p-{job.message_id}",
        error_code=code,
    )


def _status(job: OutboxJob, provider: str, status: MessageStatus, at: float, code: str = "") -> StatusUpdate:
    return StatusUpdate(
        job.channel,
        provider,
        f"p-{job.message_id}",
        status,
        status.value,
        at,
        message_id=job.message_id,
        customer_id=job.customer_id,
        error_code=code,
    )


async def test_whatsapp_131026_falls_back_to_sms_and_is_remembered(shard: Shard) -> None:
    phone = unique_phone()
    message = await shard.request(phone, "service")
    (whatsapp,) = await shard.jobs()
    assert whatsapp.channel is Channel.WHATSAPP and whatsapp.message_id == f"{message.id}-1"
    assert (
        whatsapp.template is not None and whatsapp.template.name == "threadline_update"
    )  # no customer message in 24 h: the template
    await shard.feed(_outcome(whatsapp, "meta", MessageStatus.FAILED, shard.now + 0.2, "131026"))
    jobs = await shard.jobs()
    assert [j.channel for j in jobs] == [Channel.WHATSAPP, Channel.SMS]
    sms = jobs[1]
    assert (sms.message_id, sms.address, sms.body) == (f"{message.id}-2", phone, "Your order shipped")
    await shard.feed(_outcome(sms, "twilio", MessageStatus.QUEUED, shard.now + 0.3))
    await shard.feed(_status(sms, "twilio", MessageStatus.SENT, shard.now + 1))
    record = await shard.message(message.id)
    assert record.routing is not None
    assert record.routing.state == "succeeded"
    assert [(a.channel, a.outcome) for a in record.routing.attempts] == [
        (Channel.WHATSAPP, "failed"),
        (Channel.SMS, "succeeded"),
    ]
    assert (record.status, record.channel, record.provider_message_id) == (
        MessageStatus.SENT,
        Channel.SMS,
        f"p-{sms.message_id}",
    )
    assert await shard.redis.zcard(shard.keys.timers(0)) == 0  # both step timers are gone
    events = [e.event for e in await shard.routing_events(record.customer_id)]
    assert events == ["decided", "attempt", "fallback", "attempt", "succeeded"]
    # The provider said "not on WhatsApp": the next service message goes straight to SMS.
    second = await shard.request(phone, "service", "Another update")
    assert second.routing is not None
    assert second.routing.decision.chosen is Channel.SMS
    assert [(s.channel, s.reason) for s in second.routing.decision.skipped] == [
        (Channel.WHATSAPP, SkipReason.UNREACHABLE)
    ]


async def test_whatsapp_timeout_falls_back_then_a_late_delivery_is_recorded_without_a_third_send(
    shard: Shard,
) -> None:
    phone = unique_phone()
    message = await shard.request(phone, "service")
    (whatsapp,) = await shard.jobs()
    await shard.feed(_outcome(whatsapp, "meta", MessageStatus.SENT, shard.now + 0.5))
    assert await shard.advance(59) == 0  # "delivered within 60 s": not yet
    assert await shard.advance(2) == 1
    jobs = await shard.jobs()
    assert [j.channel for j in jobs] == [Channel.WHATSAPP, Channel.SMS]
    sms = jobs[1]
    # WhatsApp delivers after all: recorded, and the SMS step's own fallback is cancelled.
    await shard.feed(_status(whatsapp, "meta", MessageStatus.DELIVERED, shard.now + 1))
    record = await shard.message(message.id)
    assert record.routing is not None
    assert record.routing.state == "succeeded"
    assert [a.outcome for a in record.routing.attempts] == ["late_success", "pending"]
    assert record.status is MessageStatus.DELIVERED
    # The SMS now fails, and its timer would have come due: still no third send.
    await shard.feed(_status(sms, "twilio", MessageStatus.UNDELIVERED, shard.now + 2, "30003"))
    assert await shard.advance(120) == 0
    assert len(await shard.jobs()) == 2
    record = await shard.message(message.id)
    assert record.status is MessageStatus.DELIVERED
    events = [e.event for e in await shard.routing_events(record.customer_id)]
    assert events == ["decided", "attempt", "timeout", "fallback", "attempt", "late_delivery", "succeeded"]


async def test_transactional_sms_30003_moves_to_voice(shard: Shard) -> None:
    phone = unique_phone()
    message = await shard.request(phone, "transactional", "Your code is 123456")
    (sms,) = await shard.jobs()
    await shard.feed(_outcome(sms, "twilio", MessageStatus.QUEUED, shard.now))
    await shard.feed(_status(sms, "twilio", MessageStatus.SENT, shard.now + 1))  # success: timer off
    assert await shard.redis.zcard(shard.keys.timers(0)) == 0
    await shard.feed(_status(sms, "twilio", MessageStatus.UNDELIVERED, shard.now + 2, "30003"))
    jobs = await shard.jobs()
    assert [j.channel for j in jobs] == [Channel.SMS, Channel.VOICE]
    record = await shard.message(message.id)
    assert record.routing is not None and record.routing.state == "active"
    assert record.status is MessageStatus.SENT  # not failed while the chain goes on


async def test_transactional_without_a_voice_sender_ends_failed_and_says_why(env: tuple[Redis, Keys]) -> None:
    shard = _make_shard(*env, channels=frozenset({Channel.SMS}))
    phone = unique_phone()
    message = await shard.request(phone, "transactional", "Your code is 123456")
    assert message.routing is not None
    assert [(s.channel, s.reason) for s in message.routing.decision.skipped] == [
        (Channel.VOICE, SkipReason.CHANNEL_UNAVAILABLE)
    ]
    (sms,) = await shard.jobs()
    await shard.feed(_outcome(sms, "twilio", MessageStatus.QUEUED, shard.now))
    await shard.feed(_status(sms, "twilio", MessageStatus.UNDELIVERED, shard.now + 2, "30003"))
    record = await shard.message(message.id)
    assert record.routing is not None and record.routing.state == "exhausted"
    assert (record.status, record.error_code) == (MessageStatus.UNDELIVERED, "30003")
    assert len(await shard.jobs()) == 1


async def test_urgent_sends_voice_and_the_sms_follow_up(shard: Shard) -> None:
    message = await shard.request(unique_phone(), "urgent", "Fraud alert: call us")
    assert [j.channel for j in await shard.jobs()] == [Channel.VOICE, Channel.SMS]
    assert await shard.redis.zcard(shard.keys.timers(0)) == 0  # nothing waits to fall back
    assert message.routing is not None and message.routing.decision.mode == "all"


async def test_a_message_no_channel_may_carry_ends_failed_without_a_send(env: tuple[Redis, Keys]) -> None:
    sms_only = _make_shard(*env, channels=frozenset({Channel.SMS}))
    message = await sms_only.request(unique_phone(), "marketing", "20% off")
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "channel_unavailable")
    assert message.error_message == (
        "email: channel_unavailable (no sender configured); whatsapp: channel_unavailable (no sender configured)"
    )
    assert message.routing is not None and message.routing.state == "refused"
    everything = _make_shard(*env, channels=frozenset(Channel))
    other = await everything.request(unique_phone(), "marketing", "20% off")
    assert (other.status, other.error_code) == (MessageStatus.FAILED, "no_eligible_channel")
    assert (
        other.error_message
        == "email: unreachable (no address known for this channel); whatsapp: not_engaged (engagement 0.00 < 1)"
    )
    assert await everything.jobs() == []


async def test_frequency_cap_counts_sends_within_one_batch(env: tuple[Redis, Keys]) -> None:
    shard = _make_shard(*env, channels=frozenset({Channel.SMS}))
    phone = unique_phone()
    await shard.feed(
        InboundMessage(
            Channel.SMS, "twilio", f"SM{uuid.uuid4().hex}", phone_identifier(phone), "+1", "hi", T0
        )
    )
    customer_id = (await shard.redis.get(shard.keys.identity(phone_identifier(phone)))).decode()
    prefs = Preferences(by_type={"marketing": TypePreference(order=(Channel.SMS,))})
    await shard.redis.set(shard.keys.preferences(customer_id), encode(prefs))
    ids = [new_message_id() for _ in range(4)]
    await shard.feed(
        *(
            OutboundRequest(mid, phone_identifier(phone), f"offer {n}", "marketing", T0)
            for n, mid in enumerate(ids)
        )
    )
    records = [await shard.message(mid) for mid in ids]
    assert [r.channel for r in records[:3]] == [Channel.SMS] * 3
    assert (records[3].status, records[3].error_code) == (MessageStatus.FAILED, "frequency_cap")
    assert len(await shard.jobs()) == 3


async def test_quiet_hours_defer_then_send_through_the_simulator(
    env: tuple[Redis, Keys], stack: Stack
) -> None:
    shard = _make_shard(*env, channels=frozenset({Channel.SMS}))
    tokyo = ZoneInfo("Asia/Tokyo")
    shard.now = datetime(2025, 3, 12, 22, 30, tzinfo=tokyo).timestamp()
    phone = unique_phone()
    await shard.feed(
        InboundMessage(
            Channel.SMS, "twilio", f"SM{uuid.uuid4().hex}", phone_identifier(phone), "+1", "hi", shard.now
        )
    )
    customer_id = (await shard.redis.get(shard.keys.identity(phone_identifier(phone)))).decode()
    await shard.redis.hset(shard.keys.customer(customer_id), "timezone", "Asia/Tokyo")
    prefs = Preferences(by_type={"marketing": TypePreference(order=(Channel.SMS,))})
    await shard.redis.set(shard.keys.preferences(customer_id), encode(prefs))
    message = await shard.request(phone, "marketing", "Spring sale starts today")
    assert message.routing is not None and message.routing.state == "deferred"
    morning = datetime(2025, 3, 13, 8, 0, tzinfo=tokyo).timestamp()
    assert message.routing.decision.deferred_until == morning
    assert await shard.jobs() == []
    assert await shard.advance(morning - shard.now - 1) == 0  # 07:59:59
    assert await shard.advance(1) == 1
    (job,) = await shard.jobs()
    assert job.channel is Channel.SMS
    record = await shard.message(message.id)
    assert record.routing is not None and record.routing.decision.chosen is Channel.SMS
    events = [e.event for e in await shard.routing_events(customer_id)]
    assert events == ["deferred", "decided", "attempt"]
    # The real sender hands the job to the simulator (no status callbacks: none asked for).
    async with aiohttp.ClientSession() as session:
        twilio = TwilioSmsSender(session, stack.config.twilio, stack.config.twilio.base_url)
        sender = OutboxSender(shard.redis, shard.keys, 0, {Channel.SMS: twilio}, lambda job: "")
        task = asyncio.create_task(sender.run())
        try:
            (sent,) = await eventually(lambda: stack.sent_to(phone), timeout=20)
        finally:
            task.cancel()
    assert sent["body"] == "Spring sale starts today"


async def test_engagement_counts_replies_and_statuses_with_decay(shard: Shard) -> None:
    phone = unique_phone()
    await shard.feed(
        InboundMessage(
            Channel.WHATSAPP, "meta", f"wamid.{uuid.uuid4().hex}", phone_identifier(phone), "+1", "hi", T0
        )
    )
    message = await shard.request(phone, "service")
    (whatsapp,) = await shard.jobs()
    assert whatsapp.template is None  # inside the 24 h window: free-form
    await shard.feed(_status(whatsapp, "meta", MessageStatus.DELIVERED, T0 + 10))
    await shard.feed(_status(whatsapp, "meta", MessageStatus.READ, T0 + 20))
    fields = await shard.redis.hgetall(shard.keys.engagement(message.customer_id))
    now = T0 + 20
    scores = scores_from_hash(fields, now)
    expected = decayed(1.0, T0, now) + decayed(0.1, T0 + 10, now) + 0.5
    assert scores[Channel.WHATSAPP] == pytest.approx(expected, rel=1e-9)
    assert scores_from_hash(fields, now + HALF_LIFE_SECONDS)[Channel.WHATSAPP] == pytest.approx(
        expected / 2, rel=1e-9
    )
    # Engaged now: marketing may go by WhatsApp (email unknown for this customer).
    offer = await shard.request(phone, "marketing", "20% off")
    assert offer.routing is not None and offer.routing.decision.chosen is Channel.WHATSAPP


# --- one fallback path: RCS's SMS substitute is a routed step ------------------------------

CARD = RichCard(title="Your order has shipped", description="Order 1042 arrives Thursday.")


def _renderer() -> AttemptRenderer:
    """The shard's attempt renderer with the shipped templates and default prices, no tracking."""
    return AttemptRenderer(None, DEFAULT_PRICES, TemplateRenderer())


def _rich_request(phone: str, at: float) -> OutboundRequest:
    return OutboundRequest(
        new_message_id(), phone_identifier(phone), "Shipped", "rich_media", at, Channel.RCS, rich_card=CARD
    )


def _inbound(phone: str, body: str, at: float, channel: Channel = Channel.SMS) -> InboundMessage:
    return InboundMessage(
        channel, "twilio", f"SM{uuid.uuid4().hex}", phone_identifier(phone), "+15005550006", body, at
    )


async def test_rcs_not_capable_to_a_customer_who_opted_out_of_sms_is_refused_on_sms(shard: Shard) -> None:
    phone = unique_phone()
    await shard.feed(_inbound(phone, "STOP", shard.now))
    request = _rich_request(phone, shard.now)
    await shard.feed(request)
    message = await shard.message(request.message_id)
    assert message.routing is not None
    assert [(s.channel, s.reason) for s in message.routing.decision.skipped] == [(Channel.SMS, "opted_out")]
    rcs = [j for j in await shard.jobs() if j.channel is Channel.RCS]
    assert len(rcs) == 1
    await shard.feed(_outcome(rcs[0], "rbm", MessageStatus.FAILED, shard.now + 1, "rcs_not_capable"))
    jobs = await shard.jobs()
    assert [j.message_id for j in jobs if j.message_id.startswith(request.message_id)] == [rcs[0].message_id]
    message = await shard.message(request.message_id)
    assert (message.status, message.error_code) == (MessageStatus.FAILED, "rcs_not_capable")
    events = await shard.routing_events(message.customer_id)
    exhausted = [e for e in events if e.event == "exhausted"]
    assert len(exhausted) == 1 and "sms opted_out" in exhausted[0].detail


async def test_an_opt_out_after_the_decision_skips_the_sms_step_with_the_reason(shard: Shard) -> None:
    phone = unique_phone()
    request = _rich_request(phone, shard.now)
    await shard.feed(request)
    message = await shard.message(request.message_id)
    assert message.routing is not None
    assert [s.channel for s in message.routing.decision.chain] == [Channel.RCS, Channel.SMS]
    (rcs,) = await shard.jobs()
    await shard.feed(_inbound(phone, "STOP", shard.now + 1))
    await shard.feed(_outcome(rcs, "rbm", MessageStatus.FAILED, shard.now + 2, "rcs_not_capable"))
    sends = [j for j in await shard.jobs() if j.message_id.startswith(request.message_id)]
    assert [j.channel for j in sends] == [Channel.RCS]  # no SMS of the card
    events = await shard.routing_events(message.customer_id)
    skipped = [e for e in events if e.event == "skipped"]
    assert [(e.channel, e.detail) for e in skipped] == [(Channel.SMS, "sms: opted_out (sms_keyword:STOP)")]
    assert (await shard.message(request.message_id)).status is MessageStatus.FAILED


async def test_rcs_not_capable_sends_the_card_adapted_as_an_sms_attempt(env: tuple[Redis, Keys]) -> None:
    shard = _make_shard(*env, render=_renderer())
    phone = unique_phone()
    request = _rich_request(phone, shard.now)
    await shard.feed(request)
    (rcs,) = await shard.jobs()
    await shard.feed(_outcome(rcs, "rbm", MessageStatus.FAILED, shard.now + 1, "rcs_not_capable"))
    _, sms = await shard.jobs()
    assert sms.channel is Channel.SMS and sms.rich_card is None
    assert sms.body == "Your order has shipped\nOrder 1042 arrives Thursday."
    attempt = await shard.message(sms.message_id)
    assert (attempt.fallback_from, attempt.fallback_reason) == (Channel.RCS, "rcs_not_capable")
    events = [e.event for e in await shard.routing_events(attempt.customer_id)]
    assert events == ["decided", "attempt", "fallback", "attempt"]


async def test_an_unpinned_templated_message_renders_each_attempt_for_its_channel(
    env: tuple[Redis, Keys],
) -> None:
    shard = _make_shard(*env, render=_renderer())
    phone = unique_phone()
    await shard.feed(_inbound(phone, "hi", shard.now, Channel.WHATSAPP))  # inside the 24-hour window
    variables = {
        "customer_name": "Ada",
        "order_id": "1042",
        "carrier": "DHL",
        "tracking_url": "https://example.com/t/1042",
    }
    sms_rendering = TemplateRenderer().render("order_shipped", Channel.SMS, variables).body
    message_id = new_message_id()
    request = OutboundRequest(
        message_id,
        phone_identifier(phone),
        sms_rendering,  # what the API checked and keeps as the message's text
        "service",
        shard.now,
        template_kind="order_shipped",
        variables=variables,
    )
    await shard.feed(request)
    (whatsapp,) = [j for j in await shard.jobs() if j.message_id.startswith(message_id)]
    assert whatsapp.channel is Channel.WHATSAPP
    assert whatsapp.body == TemplateRenderer().render("order_shipped", Channel.WHATSAPP, variables).body
    assert whatsapp.body != sms_rendering
    await shard.feed(_outcome(whatsapp, "meta", MessageStatus.FAILED, shard.now + 1, "131047"))
    sms = [j for j in await shard.jobs() if j.message_id.startswith(message_id)][-1]
    assert (sms.channel, sms.body) == (Channel.SMS, sms_rendering)
    assert (await shard.message(message_id)).body == sms_rendering
