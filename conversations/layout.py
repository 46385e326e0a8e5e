"""The deployment's layout in Redis, and adopting the keys of shards it no longer runs.

The slot count is fixed for a deployment's life (customer ids name slots), so the first
process to start records it and every later one must agree. The shard count may change: the
layout keeps the most shards the deployment has run with, and when it now runs fewer, each
*retired* shard's hand-off keys (ingest and outbox streams, timers, dead letters) are moved
onto a live shard (retired shard ``r`` onto ``r % shards``), so nothing pending is stranded.
Moved entries for customers homed elsewhere are forwarded as usual.

Deployments from before slots have no layout: their shard keys are found once, by SCAN.
A retired shard's actor must no longer run (the embedded stack's actors stop with it; on a
Ray cluster, kill the detached ``shard-<n>`` actors above the new count first).
"""

from __future__ import annotations

from redis.asyncio import Redis

from conversations.store import Keys

# KEYS: the layout hash. ARGV: slots, shards, shards seen by a scan (0: none).
# Returns {recorded slots, most shards before this start}; the caller refuses a slot mismatch.
_RECORD = """
redis.call('HSETNX', KEYS[1], 'slots', ARGV[1])
local slots = tonumber(redis.call('HGET', KEYS[1], 'slots'))
local before = tonumber(redis.call('HGET', KEYS[1], 'shards') or ARGV[3])
local most = math.max(before, tonumber(ARGV[2]), tonumber(ARGV[3]))
if slots == tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'shards', most)
end
return {slots, before}
"""

# KEYS: retired ingest, outbox, timers, timer entries, dead letters; then the live shard's.
# ARGV: how many of each to move in this call. Returns how many moved (0: done, keys deleted).
_ADOPT = """
local limit = tonumber(ARGV[1])
local moved = 0
for _, pair in ipairs({{1, 6}, {2, 7}, {5, 10}}) do
  local entries = redis.call('XRANGE', KEYS[pair[1]], '-', '+', 'COUNT', limit)
  for _, entry in ipairs(entries) do
    redis.call('XADD', KEYS[pair[2]], '*', unpack(entry[2]))
    redis.call('XDEL', KEYS[pair[1]], entry[1])
    moved = moved + 1
  end
end
local timers = redis.call('ZRANGE', KEYS[3], 0, limit - 1, 'WITHSCORES')
for i = 1, #timers, 2 do
  local id = timers[i]
  local entry = redis.call('HGET', KEYS[4], id)
  if entry then
    redis.call('HSET', KEYS[9], id, entry)
    redis.call('ZADD', KEYS[8], timers[i + 1], id)
  end
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  moved = moved + 1
end
if moved == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
end
return moved
"""


class LayoutMismatch(RuntimeError):
    """The configured slot count differs from the one the deployment's customer ids use."""


def retired_for(shard: int, shards: int, most_shards: int) -> list[int]:
    """The retired shards (numbers ``shards`` .. ``most_shards - 1``) that ``shard`` adopts."""
    return list(range(shards + shard, most_shards, shards))


async def scanned_shards(redis: Redis, keys: Keys) -> int:
    """How many shards an old layout ran: one more than the highest ``{s<n>}`` key found."""
    found = -1
    start = len(keys.prefix) + 3  # after "<prefix>:{s"
    async for key in redis.scan_iter(match=keys.shard_pattern(), count=5000):
        number = key.decode()[start:].split("}", 1)[0]
        if number.isascii() and number.isdigit():
            found = max(found, int(number))
    return found + 1


async def check_slots(redis: Redis, keys: Keys, slots: int) -> None:
    """Record the slot count on first start; raise LayoutMismatch when it differs from the one recorded."""
    pipe = redis.pipeline(transaction=True)
    pipe.hsetnx(keys.layout(), "slots", slots)
    pipe.hget(keys.layout(), "slots")
    _, recorded = await pipe.execute()
    _refuse_other_slots(int(recorded), slots)


def _refuse_other_slots(recorded: int, slots: int) -> None:
    if recorded != slots:
        raise LayoutMismatch(
            f"slots is {slots} but this deployment's customer ids name {recorded} slots; "
            f"set slots = {recorded} (it cannot change once customers exist)"
        )


async def record_layout(redis: Redis, keys: Keys, slots: int, shards: int) -> int:
    """Check the slot count and record the shard count; returns the most shards run before.

    Raises LayoutMismatch when the deployment's customer ids were made with another slot count.
    """
    known = await redis.hexists(keys.layout(), "shards")
    scanned = 0 if known else await scanned_shards(redis, keys)
    recorded, before = await redis.eval(_RECORD, 1, keys.layout(), slots, shards, scanned)
    _refuse_other_slots(int(recorded), slots)
    return int(before)


async def adopt(redis: Redis, keys: Keys, retired: int, shard: int, chunk: int = 500) -> int:
    """Move a retired shard's pending entries and timers onto ``shard``; returns how many moved."""
    names = [
        keys.ingest(retired),
        keys.outbox(retired),
        keys.timers(retired),
        keys.timer_entries(retired),
        keys.dead_letters(retired),
        keys.ingest(shard),
        keys.outbox(shard),
        keys.timers(shard),
        keys.timer_entries(shard),
        keys.dead_letters(shard),
    ]
    total = 0
    while moved := int(await redis.eval(_ADOPT, len(names), *names, chunk)):
        total += moved
    return total
