"""Applying a batch of ingest entries to one shard's customers, in one Redis transaction.

The shard actor reads a batch from its ingest stream and hands it here. The processor is a
thin loop over the batch's participants (``conversations.batch.participants``):

1. resolve: whose entry is each item, and the message records the entries name (one read);
2. read: every participant queues what it needs on one shared pipeline (one read; journeys may
   take one more, only when a customer in the batch has a running journey);
3. apply: each item goes through every participant in order, queuing writes on the transaction;
4. flush: participants add batch-level writes; the entries are acked (XACK + XDEL); EXEC.

A crash before EXEC leaves the entries pending, and the replay writes them once; a crash after
EXEC leaves nothing to replay. So each entry takes effect exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import msgspec
from redis.asyncio import Redis

from conversations import stream_entries
from conversations.batch.context import BatchContext, BatchItem, BatchResult, ReadQueue
from conversations.batch.participant import BatchParticipant
from conversations.batch.resolution import resolve
from conversations.codec import decode_ingest
from conversations.models import Forwarded
from conversations.sharding import shard_for_customer
from conversations.slots import SlotMap
from conversations.store import CONSUMER_GROUP, INGEST_FIELD, Keys

log = logging.getLogger(__name__)

RawEntry = tuple[bytes, dict[bytes, bytes]]


class BatchProcessor:
    """Applies ingest batches for one shard through its participants."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        shard: int,
        slot_map: SlotMap,
        participants: Sequence[BatchParticipant],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._shard = shard
        self._slot_map = slot_map
        self._participants = tuple(participants)
        self._followers = tuple(p for p in self._participants if hasattr(p, "read_more"))
        self._clock = clock
        self._ingest_key = keys.ingest(shard)

    async def process(self, raw_batch: Sequence[RawEntry]) -> BatchResult:
        """Apply a batch read from the ingest stream; acks it in the same transaction."""
        items: list[BatchItem] = []
        dead: list[tuple[bytes, bytes]] = []
        acked_only: list[bytes] = []
        for stream_id, fields in raw_batch:
            if not fields:  # already deleted: a replay of an entry whose batch committed
                acked_only.append(stream_id)
                continue
            payload = fields.get(INGEST_FIELD, b"")
            try:
                entry = decode_ingest(payload)
            except msgspec.DecodeError:
                log.error("shard %s: undecodable ingest entry %r", self._shard, stream_id)
                dead.append((stream_id, payload))
                continue
            if isinstance(entry, Forwarded):
                items.append(BatchItem(stream_id, entry.entry, entry.customer_id))
            else:
                # Entries about one of our messages name their customer ("" until matched).
                items.append(BatchItem(stream_id, entry, getattr(entry, "customer_id", "")))

        ctx = BatchContext(self._keys, self._shard, self._slot_map, self._clock(), items)
        await resolve(self._redis, ctx)
        reads = ReadQueue(self._redis.pipeline(transaction=False))
        for participant in self._participants:
            participant.read(ctx, reads)
        await reads.run()
        if self._followers:
            more = ReadQueue(self._redis.pipeline(transaction=False))
            for follower in self._followers:
                follower.read_more(ctx, more)
            await more.run()

        tx = self._redis.pipeline(transaction=True)
        result = ctx.result
        position = 0
        while position < len(ctx.items):  # participants may add items (a keyword's reply)
            item = ctx.items[position]
            position += 1
            ctx.insert_at = position
            if not item.home:
                forwarded = Forwarded(customer_id=item.customer_id, entry=item.entry)
                home = shard_for_customer(item.customer_id, self._slot_map) or 0
                stream_entries.append(tx, self._keys.ingest(home), forwarded)
                result.forwarded += 1
                continue
            for participant in self._participants:
                participant.apply(item, ctx, tx)
                if item.held:
                    break
            if item.held or not item.stream_id:
                continue
            result.applied += 1
            if item.customer_id:  # a shard-wide entry (a segment backfill chunk) touches nobody
                result.touched_customers.add(item.customer_id)
        for participant in self._participants:
            participant.flush(ctx, tx)
        for stream_id, payload in dead:
            tx.xadd(self._keys.dead_letters(self._shard), {INGEST_FIELD: payload, b"id": stream_id})
        result.dead = len(dead)
        ids = [item.stream_id for item in ctx.items if item.stream_id]
        ids += [sid for sid, _ in dead] + acked_only
        if ids:
            tx.xack(self._ingest_key, CONSUMER_GROUP, *ids)
            tx.xdel(self._ingest_key, *ids)
        await tx.execute()
        return result

    async def dead_letter(self, entry: RawEntry) -> None:
        """Set one entry aside on the shard's dead-letter stream and ack it (nothing is lost)."""
        stream_id, fields = entry
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(
            self._keys.dead_letters(self._shard),
            {INGEST_FIELD: (fields or {}).get(INGEST_FIELD, b""), b"id": stream_id},
        )
        pipe.xack(self._ingest_key, CONSUMER_GROUP, stream_id)
        pipe.xdel(self._ingest_key, stream_id)
        await pipe.execute()
