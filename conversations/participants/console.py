"""Console updates: the batch's conversation changes, published inside its own transaction."""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.console import ConsoleBatchHook


class ConsoleUpdates:
    """Publishes an update per touched conversation exactly when the batch lands."""

    def __init__(self, hook: ConsoleBatchHook) -> None:
        self._hook = hook

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        return None

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        return None

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        if ctx.result.touched_customers:
            self._hook(tx, ctx.result, ctx.now)
