"""Backend events (``POST /v1/events``) join the customer's history; journeys see them next."""

from __future__ import annotations

import logging

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.models import EventLogged, EventReceived

log = logging.getLogger(__name__)


class Events:
    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        return None

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = item.entry
        if not isinstance(entry, EventReceived):
            return
        if not item.customer_id:  # neither an identifier nor a customer id: nobody to attach it to
            log.warning("shard %s: event %s names no customer; dropped", ctx.shard, entry.event_id)
            return
        if entry.customer is not None:
            ctx.customer_writes.touch(item.customer_id, ctx.now, entry.customer)
        # Readers assume an entry's time is never after its write (``since`` scans by stream id).
        logged = EventLogged(entry.event_id, entry.name, min(entry.occurred_at, ctx.now), entry.properties)
        ctx.log(item.customer_id, logged)

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        return None
