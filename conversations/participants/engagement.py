"""Engagement per channel: a reply, a delivery or a read raises the customer's score there."""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.models import InboundMessage, MessageStatus
from conversations.routing.engagement import EngagementRecorder

EVENTS = {MessageStatus.DELIVERED: "delivered", MessageStatus.READ: "read"}


class EngagementScores:
    """Counts replies (inbound messages) and deliveries/reads of routed attempts."""

    def __init__(self, recorder: EngagementRecorder) -> None:
        self._recorder = recorder

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        return None  # updated by a script inside the transaction: nothing to read first

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = item.entry
        if isinstance(entry, InboundMessage):
            self._recorder.record(tx, item.customer_id, entry.channel, "replied", entry.received_at)
            return
        record, change = item.record, item.change
        if record is None or change is None or not record.parent_id:
            return
        event = EVENTS.get(change.status)
        if event is not None and record.parent_id in ctx.records:
            self._recorder.record(tx, record.customer_id, record.channel, event, change.at)

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        return None
