"""What takes part in every batch a shard applies."""

from __future__ import annotations

from typing import Protocol

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue


class BatchParticipant(Protocol):
    """One concern of the batch (thread, records, consent, routing, journeys, ...).

    ``read`` queues what it needs for the batch's items on the shared read queue (all
    participants' reads are one round trip, after identity resolution); ``apply`` adds the
    writes of one item to the transaction; ``flush`` adds batch-level writes before EXEC.
    """

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None: ...

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None: ...

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None: ...


class FollowUpReads(Protocol):
    """A participant whose reads depend on its first ones (journeys: the running instances).

    Every such participant shares one more round trip, taken only when one of them queues a read.
    """

    def read_more(self, ctx: BatchContext, reads: ReadQueue) -> None: ...
