"""The thread stream's one writer in a batch: every participant's lines, in the order logged."""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from conversations import stream_entries
from conversations.batch.context import BatchContext, BatchItem, ReadQueue


class ThreadWriter:
    """Appends what the batch logged to each customer's thread (last in the list: it flushes last)."""

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        return None

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        return None

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        for customer_id, event in ctx.take_thread():
            stream_entries.append(tx, ctx.keys.thread(customer_id), event)
