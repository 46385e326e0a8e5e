"""Following merge redirects: a customer merged into another resolves to the survivor."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from conversations.store import Keys

MAX_HOPS = 8  # chains are short (A merged into B, later B into C); a cycle cannot loop forever


async def follow(redis: Redis, keys: Keys, customer_ids: Iterable[str]) -> dict[str, str]:
    """Each given id mapped to the id it resolves to now (itself when never merged)."""
    current = {cid: cid for cid in customer_ids if cid}
    for _ in range(MAX_HOPS):
        ids = sorted(set(current.values()))
        if not ids:
            break
        targets = await redis.mget([keys.redirect(cid) for cid in ids])
        moved = {cid: t.decode() for cid, t in zip(ids, targets, strict=True) if t}
        if not moved:
            break
        current = {origin: moved.get(now, now) for origin, now in current.items()}
    return current


async def follow_one(redis: Redis, keys: Keys, customer_id: str) -> str:
    """The id ``customer_id`` resolves to now."""
    return (await follow(redis, keys, [customer_id])).get(customer_id, customer_id)
