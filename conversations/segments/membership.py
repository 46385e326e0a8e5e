"""Moving one customer in or out of one segment's member set on a shard, with its count.

One script per change, queued inside a transaction: the count moves only when the set did, so a
replayed or repeated change can never make a shard's count differ from its members.
"""

from __future__ import annotations

from typing import Any

from conversations.store import Keys

# KEYS: the segment's member set on this shard, the shard's counts. ARGV: name, member, 1 | -1.
_MOVE = """
if ARGV[3] == '1' then
  if redis.call('ZADD', KEYS[1], 0, ARGV[2]) == 1 then redis.call('HINCRBY', KEYS[2], ARGV[1], 1) end
elseif redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
end
return 1
"""


# KEYS: the shard's counts, then one member set per change. ARGV: name, member, 1 | -1 per change.
_MOVE_MANY = """
for i = 2, #KEYS do
  local name, member, delta = ARGV[i * 3 - 5], ARGV[i * 3 - 4], ARGV[i * 3 - 3]
  if delta == '1' then
    if redis.call('ZADD', KEYS[i], 0, member) == 1 then redis.call('HINCRBY', KEYS[1], name, 1) end
  elseif redis.call('ZREM', KEYS[i], member) == 1 then
    redis.call('HINCRBY', KEYS[1], name, -1)
  end
end
return #KEYS - 1
"""


def move_many(pipe: Any, keys: Keys, shard: int, changes: list[tuple[str, str, int]]) -> None:
    """Queue every (segment, customer, 1 | -1) change of a batch on ``shard`` as one script."""
    if not changes:
        return
    members = [keys.segment_members(shard, name) for name, _, _ in changes]
    args = [part for name, customer_id, delta in changes for part in (name, customer_id, str(delta))]
    pipe.eval(_MOVE_MANY, 1 + len(members), keys.segment_counts(shard), *members, *args)


def move(pipe: Any, keys: Keys, shard: int, name: str, customer_id: str, delta: int) -> None:
    """Queue: ``customer_id`` enters (``delta`` 1) or leaves (-1) segment ``name`` on ``shard``."""
    # Plain EVAL, not EVALSHA: inside MULTI a NOSCRIPT error could not be retried cleanly.
    members = keys.segment_members(shard, name)
    pipe.eval(_MOVE, 2, members, keys.segment_counts(shard), name, customer_id, str(delta))
