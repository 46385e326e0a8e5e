"""Conversation sessions: every message joins its customer's session (opened after a quiet gap)."""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.customer_hash import CustomerSession
from conversations.models import InboundMessage, OutboundRequest
from conversations.sessions import Session, session_for


class Sessions:
    """Gives each inbound and outbound message its ``session_id`` (kept in the customer hash)."""

    def __init__(self, idle_seconds: float = 24 * 3600) -> None:
        self._idle = idle_seconds

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        return None  # the session lives in the customer hash, read for every home customer

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = item.entry
        if isinstance(entry, InboundMessage):
            at = entry.received_at
        elif isinstance(entry, OutboundRequest):
            at = entry.requested_at if item.stream_id else ctx.now
        else:
            return
        facts = ctx.facts(item.customer_id)
        stored = facts.session
        current = Session(stored.id, stored.last_at) if stored else None
        session, _opened = session_for(current, at, self._idle)
        facts.session = CustomerSession(session.id, session.last_at)
        ctx.customer_writes.session(item.customer_id, facts.session)
        item.session_id = session.id

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        return None
