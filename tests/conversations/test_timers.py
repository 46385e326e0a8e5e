"""Durable timers fire once, after their due time, into the shard's ingest stream."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from conversations import timers
from conversations.codec import decode_ingest
from conversations.models import Channel, MessageStatus, StatusUpdate
from conversations.store import INGEST_FIELD, Keys


def _entry(n: int) -> StatusUpdate:
    return StatusUpdate(Channel.SMS, "twilio", f"SM{n}", MessageStatus.SENT, "sent", at=float(n))


async def test_timer_fires_once_after_due(redis_url: str, key_prefix: str) -> None:
    keys = Keys(f"{key_prefix}:timers-{uuid.uuid4().hex[:6]}")
    redis = Redis.from_url(redis_url)
    try:
        pipe = redis.pipeline(transaction=True)
        timers.schedule(pipe, keys, 0, "t1", 100.0, _entry(1))
        timers.schedule(pipe, keys, 0, "t2", 200.0, _entry(2))
        timers.schedule(pipe, keys, 0, "gone", 100.0, _entry(3))
        timers.cancel(pipe, keys, 0, "gone")
        await pipe.execute()
        wheel = TimerWheelPair(redis, keys)
        assert await wheel.a.fire_due(99.0) == 0
        # Two pollers racing (a restarted actor and a dying one): each timer fires once.
        fired = await asyncio.gather(wheel.a.fire_due(150.0), wheel.b.fire_due(150.0))
        assert sum(fired) == 1
        assert await wheel.a.fire_due(150.0) == 0
        assert await wheel.b.fire_due(250.0) == 1
        stream = await redis.xrange(keys.ingest(0))
        assert [decode_ingest(f[INGEST_FIELD]).provider_message_id for _, f in stream] == ["SM1", "SM2"]
        assert await redis.zcard(keys.timers(0)) == 0
        assert await redis.hlen(keys.timer_entries(0)) == 0
    finally:
        await redis.delete(keys.ingest(0), keys.timers(0), keys.timer_entries(0))
        await redis.aclose()


class TimerWheelPair:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.a = timers.TimerWheel(redis, keys, 0)
        self.b = timers.TimerWheel(redis, keys, 0)
