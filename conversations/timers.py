"""Durable per-shard timers: a sorted set of due times plus the ingest entry each one releases.

Scheduling and cancelling happen inside a batch's transaction. Firing is one Lua script that
moves every due entry onto the shard's ingest stream: ZREM decides who fires, so a timer fires
once even when a restarted actor races a dying one, and the entry is durable in the stream
before the timer is gone. A restarted actor simply keeps polling: due timers are still there.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from conversations.codec import encode
from conversations.models import IngestEntry
from conversations.store import INGEST_FIELD, Keys

# KEYS: zset of timer ids by due time, hash id -> entry, ingest stream. ARGV: now, limit.
_FIRE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local fired = 0
for _, id in ipairs(due) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local entry = redis.call('HGET', KEYS[2], id)
    redis.call('HDEL', KEYS[2], id)
    if entry then
      redis.call('XADD', KEYS[3], '*', ARGV[3], entry)
      fired = fired + 1
    end
  end
end
return fired
"""


def schedule(pipe: Pipeline, keys: Keys, shard: int, timer_id: str, due: float, entry: IngestEntry) -> None:
    """Release ``entry`` onto the shard's ingest stream at ``due`` (replaces a timer of the same id)."""
    pipe.hset(keys.timer_entries(shard), timer_id, encode(entry))
    pipe.zadd(keys.timers(shard), {timer_id: due})


def cancel(pipe: Pipeline, keys: Keys, shard: int, timer_id: str) -> None:
    """Forget a timer that has not fired yet (a no-op once it has)."""
    pipe.zrem(keys.timers(shard), timer_id)
    pipe.hdel(keys.timer_entries(shard), timer_id)


class TimerWheel:
    """Fires one shard's due timers."""

    def __init__(self, redis: Redis, keys: Keys, shard: int, batch: int = 256) -> None:
        self._keys = keys
        self._shard = shard
        self._batch = batch
        self._fire = redis.register_script(_FIRE_DUE)

    async def fire_due(self, now: float) -> int:
        """Move due timers' entries to the ingest stream; returns how many fired."""
        keys = [
            self._keys.timers(self._shard),
            self._keys.timer_entries(self._shard),
            self._keys.ingest(self._shard),
        ]
        return int(await self._fire(keys=keys, args=[repr(now), self._batch, INGEST_FIELD]))

    async def pending(self, redis: Redis) -> int:
        return int(await redis.zcard(self._keys.timers(self._shard)))
