"""Durable hand-off to the shards: batched per shard, one Redis round trip per flush.

Concurrent requests queue their entries; a flush (after ``max_delay`` or ``max_entries``)
sends one pipeline holding one script call per shard. The script does, per entry, the
dedupe ``SET NX`` and the ``XADD`` to the shard's ingest stream atomically, so an entry is
either new and durable, or a known duplicate. Only then do the waiting requests answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from redis.asyncio import Redis

from conversations.store import Keys

# KEYS[1] = the ingest stream, KEYS[2..] = dedupe keys.
# ARGV[1] = dedupe TTL, then per entry: dedupe key index (0: none), payload.
# Returns, per entry, the new stream id or 0 for a duplicate.
_INGEST_SCRIPT = """
local ttl = ARGV[1]
local out = {}
local n = (#ARGV - 1) / 2
for i = 1, n do
  local key_index = tonumber(ARGV[2 * i])
  local fresh = true
  if key_index > 0 then
    fresh = redis.call('SET', KEYS[key_index + 1], '1', 'NX', 'EX', ttl)
  end
  if fresh then
    out[i] = redis.call('XADD', KEYS[1], '*', 'd', ARGV[2 * i + 1])
  else
    out[i] = 0
  end
end
return out
"""


@dataclass(slots=True)
class _Pending:
    payloads: list[bytes] = field(default_factory=list)
    dedupe_keys: list[str | None] = field(default_factory=list)
    futures: list[asyncio.Future[bool]] = field(default_factory=list)


class IngestWriter:
    """Writes ingest entries to shard streams in per-shard batches."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        dedupe_ttl: int,
        max_entries: int = 256,
        max_delay: float = 0.002,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._dedupe_ttl = dedupe_ttl
        self._max_entries = max_entries
        self._max_delay = max_delay
        self._pending: dict[int, _Pending] = {}
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task] = set()

    async def submit(self, shard: int, payload: bytes, dedupe_key: str | None = None) -> bool:
        """Make ``payload`` durable on ``shard``'s ingest stream.

        Returns False when ``dedupe_key`` was seen before (nothing written). Raises the
        Redis error when the write failed, so the caller can refuse the request.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        pending = self._pending.get(shard)
        if pending is None:
            pending = self._pending[shard] = _Pending()
        pending.payloads.append(payload)
        pending.dedupe_keys.append(dedupe_key)
        pending.futures.append(future)
        self._count += 1
        if self._count >= self._max_entries:
            self._flush_now()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_delay, self._flush_now)
        return await future

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending, self._count = self._pending, {}, 0
        if batch:
            task = asyncio.create_task(self._write(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _write(self, batch: dict[int, _Pending]) -> None:
        # ``async with`` resets the pipeline even when Redis drops mid-write (its connection goes
        # back to the pool), and any failure reaches every waiting request instead of leaving
        # them hanging.
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for shard, pending in batch.items():
                    keys = [self._keys.ingest(shard)]
                    args: list[int | str | bytes] = [self._dedupe_ttl]
                    for dedupe_key, payload in zip(pending.dedupe_keys, pending.payloads, strict=True):
                        if dedupe_key is None:
                            args.append(0)
                        else:
                            keys.append(self._keys.dedupe(shard, dedupe_key))
                            args.append(len(keys) - 1)
                        args.append(payload)
                    # EVAL, not a registered Script: redis-py checks SCRIPT EXISTS before every
                    # pipeline holding a Script, an extra round trip per flush.
                    pipe.eval(_INGEST_SCRIPT, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            replies = [exc] * len(batch)
        for pending, reply in zip(batch.values(), replies, strict=True):
            for index, future in enumerate(pending.futures):
                if future.done():
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply[index] != 0)

    @property
    def queued(self) -> int:
        """Entries waiting for the next flush."""
        return self._count

    async def drain(self) -> None:
        """Shutting down: write what is queued now, and every later entry without batching delay."""
        self._max_delay = 0.0
        await self.close()

    async def close(self) -> None:
        """Flush what is queued and wait for writes in flight."""
        self._flush_now()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
