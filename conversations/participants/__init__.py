"""The participants of a shard's batch, one module each, and the one list that orders them.

Every item goes through the participants in this order; their ``flush`` runs in the same order,
so the writers of shared outputs (message records, the customer hash, the thread) come last.
Adding a participant is one module and one line in ``participants``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis

from conversations.batch.participant import BatchParticipant
from conversations.batch.processor import BatchProcessor
from conversations.console import ConsoleBatchHook
from conversations.journeys.runner import JourneyRunner
from conversations.keywords import KeywordReplies
from conversations.participants.consent import ConsentChanges
from conversations.participants.console import ConsoleUpdates
from conversations.participants.customers import CustomerHashes
from conversations.participants.engagement import EngagementScores
from conversations.participants.events import Events
from conversations.participants.messages import MessageRecords
from conversations.participants.notes import AgentNotes
from conversations.participants.routing import Router, RoutingSettings
from conversations.participants.segments import SegmentEngine
from conversations.participants.sessions import Sessions
from conversations.participants.thread import ThreadWriter
from conversations.routing.engagement import EngagementRecorder
from conversations.slots import SlotMap
from conversations.store import Keys

DEFAULT_SESSION_IDLE_SECONDS = 24 * 3600


def participants(
    keys: Keys,
    shard: int,
    *,
    routing: RoutingSettings | None = None,
    keyword_replies: KeywordReplies | None = None,
    session_idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS,
    console: ConsoleBatchHook | None = None,
) -> list[BatchParticipant]:
    """The participants of one shard's batches, in the order they apply each entry."""
    found: list[BatchParticipant | None] = [
        Sessions(session_idle_seconds),
        MessageRecords(),
        ConsentChanges(keyword_replies),
        Events(),
        AgentNotes(),
        Router(routing),
        EngagementScores(EngagementRecorder(keys)),
        JourneyRunner(keys, shard),
        SegmentEngine(keys, shard),
        ConsoleUpdates(console) if console is not None else None,
        CustomerHashes(),
        ThreadWriter(),
    ]
    return [p for p in found if p is not None]


def build_processor(
    redis: Redis,
    keys: Keys,
    shard: int,
    slot_map: SlotMap,
    *,
    clock: Callable[[], float] = time.time,
    routing: RoutingSettings | None = None,
    keyword_replies: KeywordReplies | None = None,
    session_idle_seconds: float = DEFAULT_SESSION_IDLE_SECONDS,
    console: ConsoleBatchHook | None = None,
) -> BatchProcessor:
    """A shard's batch processor with the default participants."""
    chosen = participants(
        keys,
        shard,
        routing=routing,
        keyword_replies=keyword_replies,
        session_idle_seconds=session_idle_seconds,
        console=console,
    )
    return BatchProcessor(redis, keys, shard, slot_map, chosen, clock=clock)
