"""Agents' internal notes join the thread through the shard, like every other write to it."""

from __future__ import annotations

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.models import AgentNote, NoteLogged


class AgentNotes:
    """Logs each note in the thread; the console update names its agent."""

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        return None

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = item.entry
        if isinstance(entry, AgentNote):
            ctx.log(item.customer_id, NoteLogged(entry.note_id, entry.agent, entry.body, entry.at))
            ctx.result.notes[item.customer_id] = entry.agent

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        return None
