"""A shard actor killed mid-backlog leaves every segment's count equal to the members it lists."""

from __future__ import annotations

import uuid

import ray
from ray.exceptions import RayActorError
from redis.asyncio import Redis

from conversations.codec import encode
from conversations.models import EventReceived
from conversations.normalize import phone_identifier
from conversations.store import INGEST_FIELD, Keys
from tests.support.shards import phones_on_shard
from tests.support.stack import Stack, eventually

SHARD = 1
CUSTOMERS = 20
EVENTS_EACH = 20


async def test_killing_the_actor_mid_backlog_keeps_counts_equal_to_members(stack: Stack) -> None:
    keys = Keys(stack.config.key_prefix)
    event = f"tick-{uuid.uuid4().hex[:8]}"
    many, between = f"many-{event}", f"between-{event}"
    rules = {
        many: {"event": event, "count": {"op": "gte", "value": 10}},
        # Entered at the 5th event, left at the 15th: every customer enters and leaves.
        between: {
            "all": [{"event": event, "count": 5}, {"event": event, "count": {"op": "lt", "value": 15}}]
        },
    }
    for name, rule in rules.items():
        status, body = await stack.api("PUT", f"/v1/segments/{name}", json={"rule": rule})
        assert status == 201, body
    phones = phones_on_shard(CUSTOMERS, SHARD, stack.config.slot_map())
    redis = Redis.from_url(stack.config.redis_url)
    try:
        pipe = redis.pipeline(transaction=False)
        for n in range(EVENTS_EACH):
            for index, phone in enumerate(phones):
                entry = EventReceived(
                    f"evt_k{n}_{index}_{event}", event, float(n), float(n), phone_identifier(phone)
                )
                pipe.xadd(keys.ingest(SHARD), {INGEST_FIELD: encode(entry)})
        first_incarnation = (await stack.actors[SHARD].stats.remote()).started_at
        await pipe.execute()
        ray.kill(stack.actors[SHARD], no_restart=False)

        async def recovering() -> bool:
            try:
                stats = await stack.actors[SHARD].stats.remote()
            except RayActorError:
                return False
            return (stats.started_at != first_incarnation and stats.entries > 0) or await redis.xlen(
                keys.ingest(SHARD)
            ) == 0

        await eventually(recovering, timeout=60, interval=0.01)
        ray.kill(stack.actors[SHARD], no_restart=False)  # and once more, mid-recovery

        async def settled() -> list[str] | None:
            """Every customer in ``many`` and, past their 15th event, out of ``between`` again."""
            status, body = await stack.api("GET", f"/v1/segments/{many}/members", params={"limit": "1000"})
            assert status == 200
            status, still = await stack.api("GET", f"/v1/segments/{between}/members")
            done = len(body["data"]) == CUSTOMERS and not still["data"]
            return body["data"] if done and await redis.xlen(keys.ingest(SHARD)) == 0 else None

        members = await eventually(settled, timeout=60, interval=0.2, what="all events applied")
        assert sorted(members) == sorted([await stack.customer_id(p) for p in phones])  # type: ignore[type-var]
        for shard in range(stack.config.shards):
            counts = await redis.hgetall(keys.segment_counts(shard))
            for name in (many, between):
                listed = await redis.zcard(keys.segment_members(shard, name))
                assert int(counts.get(name.encode(), 0)) == listed, (shard, name)
        status, view = await stack.api("GET", f"/v1/segments/{between}")
        assert view["count"] == 0
        status, view = await stack.api("GET", f"/v1/segments/{many}")
        assert view["count"] == CUSTOMERS
        for name in rules:
            assert (await stack.api("DELETE", f"/v1/segments/{name}"))[0] == 200
    finally:
        await redis.aclose()
