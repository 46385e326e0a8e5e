"""Fewer shards than before: what a retired shard left pending is applied, not stranded."""

from __future__ import annotations

import asyncio

import ray
from redis.asyncio import Redis

from conversations.codec import encode
from conversations.models import Channel, InboundMessage
from conversations.normalize import phone_identifier
from conversations.store import INGEST_FIELD, Keys
from tests.support.stack import Stack, eventually, unique_phone


async def test_a_restarted_shard_adopts_the_entries_a_retired_shard_left(stack: Stack) -> None:
    shards = stack.config.shards
    retired = 2 * shards - 1  # as if the deployment had run 2x the shards before
    adopter = retired % shards
    keys = Keys(stack.config.key_prefix)
    phone = unique_phone()
    entry = InboundMessage(
        Channel.SMS, "twilio", "SMretired1", phone_identifier(phone), "", "left behind", 1.0
    )
    redis = Redis.from_url(stack.config.redis_url)
    try:
        await redis.hset(keys.layout(), "shards", 2 * shards)
        await redis.xadd(keys.ingest(retired), {INGEST_FIELD: encode(entry)})
        ray.kill(stack.actors[adopter], no_restart=False)  # Ray restarts it; it adopts on start
        assert await asyncio.wait_for(stack.actors[adopter].ping.remote(), 60) == adopter

        async def applied() -> list[str] | None:
            customer_id = await stack.customer_id(phone)
            if customer_id is None:
                return None
            return [e["body"] for e in (await stack.thread(customer_id))["entries"]] or None

        assert await eventually(applied, timeout=30, interval=0.2) == ["left behind"]
        assert await redis.exists(keys.ingest(retired)) == 0
    finally:
        await redis.aclose()
