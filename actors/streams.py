"""Consumer-group reading shared by the ingest loop and the outbox sender."""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from conversations.store import CONSUMER_GROUP

StreamBatch = list[tuple[bytes, dict[bytes, bytes]]]


async def ensure_group(redis: Redis, stream: str) -> None:
    """Create the shard's consumer group (and the stream) if they do not exist yet."""
    try:
        await redis.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def pending_batches(redis: Redis, stream: str, consumer: str, count: int) -> AsyncIterator[StreamBatch]:
    """Entries delivered to this consumer earlier but never acked (what a crash left behind)."""
    last = "0"
    while True:
        reply = await redis.xreadgroup(CONSUMER_GROUP, consumer, {stream: last}, count=count)
        batch: StreamBatch = reply[0][1] if reply else []
        if not batch:
            return
        yield batch
        last = batch[-1][0].decode()


async def new_batch(redis: Redis, stream: str, consumer: str, count: int, block_ms: int) -> StreamBatch:
    """The next new entries, waiting up to ``block_ms`` for some to arrive."""
    reply = await redis.xreadgroup(CONSUMER_GROUP, consumer, {stream: ">"}, count=count, block=block_ms)
    return reply[0][1] if reply else []
