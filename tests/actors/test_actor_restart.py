"""A shard actor killed while it holds a backlog loses nothing and duplicates nothing."""

from __future__ import annotations

import ray
from ray.exceptions import RayActorError
from redis.asyncio import Redis

from conversations.codec import encode
from conversations.models import Channel, InboundMessage
from conversations.normalize import phone_identifier
from conversations.store import INGEST_FIELD, Keys
from tests.support.shards import phones_on_shard
from tests.support.stack import Stack, eventually

SHARD = 2
MESSAGES = 600


async def test_killed_shard_actor_resumes_its_backlog_exactly_once(stack: Stack) -> None:
    keys = Keys(stack.config.key_prefix)
    phones = phones_on_shard(20, SHARD, stack.config.slot_map())
    redis = Redis.from_url(stack.config.redis_url)
    try:
        pipe = redis.pipeline(transaction=False)
        for n in range(MESSAGES):
            phone = phones[n % len(phones)]
            entry = InboundMessage(
                Channel.SMS,
                "twilio",
                f"SMkill{n}",
                phone_identifier(phone),
                "+15005550006",
                f"n{n}",
                float(n),
            )
            pipe.xadd(keys.ingest(SHARD), {INGEST_FIELD: encode(entry)})
        first_incarnation = (await stack.actors[SHARD].stats.remote()).started_at
        await pipe.execute()
        ray.kill(stack.actors[SHARD], no_restart=False)  # Ray restarts it (max_restarts=-1)

        async def recovering() -> bool:
            """The new incarnation has applied part of the backlog (or none was left for it)."""
            try:
                stats = await stack.actors[SHARD].stats.remote()
            except RayActorError:  # still restarting
                return False
            started = stats.started_at != first_incarnation and stats.entries > 0
            return started or await redis.xlen(keys.ingest(SHARD)) == 0

        await eventually(recovering, timeout=60, interval=0.01)
        ray.kill(stack.actors[SHARD], no_restart=False)  # and once more, mid-recovery

        async def all_applied() -> int | None:
            total = 0
            for phone in phones:
                customer_id = await stack.customer_id(phone)
                if customer_id is None:
                    return None
                total += await redis.xlen(keys.thread(customer_id))
            return total if total >= MESSAGES else None

        assert await eventually(all_applied, timeout=60, interval=0.5) == MESSAGES
        bodies: list[str] = []
        for phone in phones:
            customer_id = await stack.customer_id(phone)
            page = await stack.thread(customer_id, limit="500")
            bodies += [e["body"] for e in page["entries"]]
        assert sorted(bodies) == sorted(f"n{n}" for n in range(MESSAGES))
        assert await redis.xlen(keys.ingest(SHARD)) == 0
        assert await stack.actors[SHARD].ping.remote() == SHARD
    finally:
        await redis.aclose()
