"""Segments at the batch processor: what 20 segments cost per entry, backfill speed, Redis bytes.

``python -m bench.segments --customers 20000`` drives one shard's batch processor directly (no
gateway, no Ray: the figures are the engine's own), under its own key prefix on
127.0.0.1:6379 (``BENCH_REDIS_URL`` elsewhere), deleted at the end. Customers are created by
events, with attributes spread as a profile import would leave them; then the same event load
is applied without the segments engine and with it and 20 segments, a new segment is backfilled over every customer, and
the member sets and facts are weighed. The last line is ``RESULT name=value …``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from actors.streams import ensure_group, new_batch
from bench.harness import result_line
from conversations.batch.processor import BatchProcessor
from conversations.codec import encode
from conversations.customer_hash import attribute_field, encode_attribute
from conversations.models import EventReceived, Identifier, IdentifierKind
from conversations.participants import build_processor, participants
from conversations.participants.segments import SegmentEngine
from conversations.segments import registry
from conversations.segments.definition import parse_segment
from conversations.slots import DEFAULT_SLOTS, default_slot_map
from conversations.store import INGEST_FIELD, Keys

BATCH = 500
ONE_SHARD = default_slot_map(DEFAULT_SLOTS, 1)
EVENT_NAMES = ("page_viewed", "purchase_completed", "cart_abandoned", "login", "search")
STAGES = ("new", "active", "expert", "paying")
DAY = 86400.0


def twenty_segments() -> dict[str, dict[str, Any]]:
    """Twenty rules of every kind, as a marketing team would define them."""
    rules: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        rules[f"stage_{stage}"] = {"attribute": "lifecycle_stage", "value": stage}
    for name in EVENT_NAMES:
        rules[f"{name}_7d"] = {"event": name, "within": "7d"}
        rules[f"{name}_3x"] = {"event": name, "count": {"op": "gte", "value": 3}}
    rules["big_spender"] = {"attribute": "custom.ltv", "op": "gt", "value": 500}
    rules["sms_reachable"] = {"reachable": "sms", "message_type": "marketing"}
    rules["no_reply_21d"] = {"not": {"engagement": "replied", "within": "21d"}}
    rules["paying_buyers"] = {
        "all": [{"segment": "stage_paying"}, {"event": "purchase_completed", "within": "30d"}]
    }
    rules["engaged_experts"] = {"all": [{"segment": "stage_expert"}, {"segment": "login_3x"}]}
    rules["lapsed"] = {"all": [{"segment": "login_3x"}, {"not": {"segment": "login_7d"}}]}
    assert len(rules) == 20, len(rules)
    return rules


class Bench:
    def __init__(self, redis: Redis, keys: Keys, customers: int, now: float) -> None:
        self.redis = redis
        self.keys = keys
        self.customers = customers
        self.now = now
        self.phones = [f"+1555{n:07d}" for n in range(customers)]
        self.with_engine = build_processor(redis, keys, 0, ONE_SHARD, clock=lambda: self.now)
        # The baseline: the same participants without the segments engine.
        chosen = [p for p in participants(keys, 0) if not isinstance(p, SegmentEngine)]
        self.processor = BatchProcessor(redis, keys, 0, ONE_SHARD, chosen, clock=lambda: self.now)
        self.batch_seconds: list[float] = []

    async def feed(self, entries: list[Any]) -> float:
        """Apply ``entries`` through the processor; the seconds it took (stream writes excluded)."""
        stream = self.keys.ingest(0)
        for start in range(0, len(entries), 5000):
            pipe = self.redis.pipeline(transaction=False)
            for entry in entries[start : start + 5000]:
                pipe.xadd(stream, {INGEST_FIELD: encode(entry)})
            await pipe.execute()
        return await self.drain()

    async def drain(self) -> float:
        began = time.perf_counter()
        while True:
            batch = await new_batch(self.redis, self.keys.ingest(0), "bench", BATCH, 1)
            if not batch:
                if not await self.redis.xlen(self.keys.ingest(0)):
                    return time.perf_counter() - began
                continue
            t0 = time.perf_counter()
            await self.processor.process(batch)
            self.batch_seconds.append(time.perf_counter() - t0)

    def events(self, count: int, rng: random.Random) -> list[EventReceived]:
        found = []
        for n in range(count):
            phone = self.phones[rng.randrange(self.customers)]
            name = EVENT_NAMES[rng.randrange(len(EVENT_NAMES))]
            at = self.now - rng.random() * 20 * DAY
            found.append(
                EventReceived(
                    f"evt_b{n}_{uuid.uuid4().hex[:6]}",
                    name,
                    at,
                    self.now,
                    Identifier(IdentifierKind.PHONE, phone),
                    {"n": n % 10},
                )
            )
        return found

    async def spread_attributes(self, rng: random.Random) -> None:
        """What a profile import leaves: a lifecycle stage and a lifetime value per customer."""
        ids = await self.redis.mget(
            [self.keys.identity(Identifier(IdentifierKind.PHONE, p)) for p in self.phones]
        )
        pipe = self.redis.pipeline(transaction=False)
        for found in ids:
            if found is None:
                continue
            key = self.keys.customer(found.decode())
            pipe.hset(
                key,
                mapping={
                    attribute_field("lifecycle_stage"): encode_attribute(rng.choice(STAGES), self.now),
                    attribute_field("custom.ltv"): encode_attribute(rng.randrange(1000), self.now),
                },
            )
        await pipe.execute()

    async def define(self, name: str, rule: dict[str, Any]) -> None:
        source = {"name": name, "rule": rule}
        segment = parse_segment(source)
        await registry.check_publishable(self.redis, self.keys, segment)
        published = await registry.publish(self.redis, self.keys, segment, source, self.now)
        await registry.queue_backfill(self.redis, self.keys, name, published.version, 1)

    async def weigh(self, names: list[str]) -> tuple[float, float, int]:
        """(bytes per membership, bytes of facts per customer, memberships)."""
        members = member_bytes = 0
        for name in names:
            key = self.keys.segment_members(0, name)
            members += await self.redis.zcard(key)
            member_bytes += int(await self.redis.memory_usage(key) or 0)
        sample = [self.keys.segment_facts(cid.decode()) for cid in await self._some_customers(200)]
        facts = [int(await self.redis.memory_usage(k) or 0) for k in sample]
        return member_bytes / max(members, 1), statistics.mean(facts) if facts else 0.0, members

    async def _some_customers(self, count: int) -> list[bytes]:
        ids = await self.redis.mget(
            [self.keys.identity(Identifier(IdentifierKind.PHONE, p)) for p in self.phones[:count]]
        )
        return [found for found in ids if found]


async def run(args: argparse.Namespace) -> None:
    redis = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    keys = Keys(f"tlbench-seg-{uuid.uuid4().hex[:8]}")
    rng = random.Random(7)
    bench = Bench(redis, keys, args.customers, 1_800_000_000.0)
    try:
        await ensure_group(redis, keys.ingest(0))
        seconds = await bench.feed(
            [
                EventReceived(
                    f"evt_s{n}", "signed_up", bench.now, bench.now, Identifier(IdentifierKind.PHONE, p)
                )
                for n, p in enumerate(bench.phones)
            ]
        )
        created = args.customers / seconds
        await bench.spread_attributes(rng)
        bench.batch_seconds = []
        plain = args.events / await bench.feed(bench.events(args.events, rng))
        rules = twenty_segments()
        bench.processor = bench.with_engine
        for name in sorted(rules, key=lambda n: "segment" in str(rules[n])):
            await bench.define(name, rules[name])
        backfill_all = await bench.drain()
        bench.batch_seconds = []
        with_segments = args.events / await bench.feed(bench.events(args.events, rng))
        p95_batch = (
            statistics.quantiles(bench.batch_seconds, n=20)[-1] if len(bench.batch_seconds) > 1 else 0.0
        )
        await bench.define(
            "new_one", {"all": [{"attribute": "custom.ltv", "op": "lt", "value": 100}, {"event": "login"}]}
        )
        backfill_one = await bench.drain()
        per_member, facts_bytes, members = await bench.weigh([*rules, "new_one"])
        overhead = (plain - with_segments) / plain * 100
        print(f"customers created through the processor: {created:,.0f}/s ({args.customers:,})")
        print(f"events applied, no segments engine: {plain:,.0f}/s")
        print(f"events applied, 20 segments:  {with_segments:,.0f}/s (overhead {overhead:.1f} %)")
        print(f"p95 batch ({BATCH} entries) with 20 segments: {p95_batch * 1000:.1f} ms")
        print(f"backfill of 20 new segments: {backfill_all:.2f} s; of one more: {backfill_one:.2f} s")
        print(
            f"memberships: {members:,}; {per_member:.1f} bytes each; facts {facts_bytes:.0f} bytes per customer"
        )
        print(
            result_line(
                customers=args.customers,
                create_per_s=round(created),
                events_per_s_plain=round(plain),
                events_per_s_20=round(with_segments),
                overhead_pct=overhead,
                p95_batch_ms=p95_batch * 1000,
                backfill_20_s=backfill_all,
                backfill_1_s=backfill_one,
                bytes_per_membership=per_member,
                facts_bytes_per_customer=facts_bytes,
            )
        )
    finally:
        async for key in redis.scan_iter(match=keys.pattern(), count=5000):
            await redis.unlink(key)
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=20_000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
