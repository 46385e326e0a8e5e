"""Reading a customer's one thread (all channels, in order) and their profile."""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis

from conversations.codec import decode_message, decode_thread_event
from conversations.models import (
    Channel,
    Direction,
    EngagementKind,
    EngagementLogged,
    EventLogged,
    Identifier,
    Location,
    Media,
    MessageRecord,
    MessageStatus,
    NoteLogged,
    RichCard,
    RoutingDecision,
    RoutingLogged,
    StatusLogged,
    ThreadEvent,
)
from conversations.numerals import stream_id
from conversations.store import INGEST_FIELD, Keys
from conversations.thread_lines import engagement_line, event_line, routing_line

MAX_PAGE = 500


class ThreadEntryView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One thread entry as the API shows it; ``cursor`` resumes a page after this entry."""

    cursor: str
    kind: str  # "message", "status", "engagement", "note", "routing" or "event"
    at: float
    message_id: str = ""  # for a note: the note's id; empty for an event
    channel: Channel | None = None  # None for notes and events, which go out on no channel
    event_id: str = ""
    name: str = ""  # events: what happened, e.g. cart_abandoned
    properties: dict[str, Any] | None = None
    direction: Direction | None = None
    session_id: str = ""
    status: MessageStatus | None = None
    body: str | None = None
    error_code: str = ""
    provider: str = ""
    provider_message_id: str = ""
    address: str = ""
    media: tuple[Media, ...] = ()
    location: Location | None = None
    reply_payload: str = ""
    segments: int = 0
    created_at: float | None = None
    updated_at: float | None = None
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    rich_card: RichCard | None = None
    fallback_from: Channel | None = None
    fallback_reason: str = ""
    subject: str = ""
    encoding: str = ""
    cost: float | None = None
    engagement: EngagementKind | None = None  # opened / clicked
    url: str = ""  # the clicked link
    agent: str = ""  # who wrote a note (or, in the console, sent a reply)
    event: str = ""  # routing: decided, deferred, refused, attempt, timeout, fallback, succeeded, …
    attempt_id: str = ""
    detail: str = ""
    decision: RoutingDecision | None = None
    # Routing, event and engagement entries in one line, as the console shows them.
    summary: str = ""


class ThreadFilter(msgspec.Struct, frozen=True):
    """Which thread entries a reader wants: by channel, direction and time (``at``) window."""

    channels: frozenset[Channel] = frozenset()
    direction: Direction | None = None
    since: float | None = None
    until: float | None = None

    def is_empty(self) -> bool:
        return not self.channels and self.direction is None and self.since is None and self.until is None

    def matches(self, event: ThreadEvent) -> bool:
        if isinstance(event, EventLogged) and (self.channels or self.direction is not None):
            return False  # backend events have neither a channel nor a direction
        channel = getattr(event, "channel", None)
        if self.channels and channel not in self.channels:
            return False
        if self.direction is not None:
            # Status changes belong to our outbound messages.
            direction = getattr(event, "direction", Direction.OUTBOUND)
            if direction is not self.direction:
                return False
        at = event.at
        if self.since is not None and at < self.since:
            return False
        return self.until is None or at < self.until


class ThreadPage(msgspec.Struct):
    """One page of a thread."""

    customer_id: str
    entries: list[ThreadEntryView]
    next_cursor: str | None = None


def is_valid_cursor(cursor: str) -> bool:
    """A cursor is a Redis stream id, ``<ms>-<seq>``, that Redis accepts as an exclusive start."""
    return stream_id(cursor) is not None


class ThreadReader:
    """Read-only access to threads, messages and customers (used by the HTTP API)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def page(
        self, customer_id: str, cursor: str | None, limit: int, filters: ThreadFilter | None = None
    ) -> ThreadPage:
        """Entries after ``cursor`` (exclusive) that pass ``filters``, oldest first, at most ``limit``."""
        limit = max(1, min(limit, MAX_PAGE))
        filters = filters or ThreadFilter()
        key = self._keys.thread(customer_id)
        # Stream ids are write times and an event's ``at`` is never later than its write, so
        # starting the scan at ``since`` skips nothing that matches.
        start = f"({cursor}" if cursor else (f"{int(filters.since * 1000)}-0" if filters.since else "-")
        scan = limit + 1 if filters.is_empty() else max(100, 2 * limit)
        matched: list[tuple[str, ThreadEvent]] = []
        while len(matched) <= limit:
            raw = await self._redis.xrange(key, min=start, count=scan)
            for sid, fields in raw:
                event = decode_thread_event(fields[INGEST_FIELD])
                if filters.matches(event):
                    matched.append((sid.decode(), event))
            if len(raw) < scan:
                break
            start = f"({raw[-1][0].decode()}"
        more = len(matched) > limit
        events = matched[:limit]
        message_ids = sorted({e.message_id for _, e in events if not isinstance(e, NoteLogged | EventLogged)})
        records: dict[str, MessageRecord] = {}
        if message_ids:
            blobs = await self._redis.mget([self._keys.message(mid) for mid in message_ids])
            records = {mid: decode_message(b) for mid, b in zip(message_ids, blobs, strict=True) if b}
        entries = [
            _view(
                sid,
                event,
                None if isinstance(event, NoteLogged | EventLogged) else records.get(event.message_id),
            )
            for sid, event in events
        ]
        return ThreadPage(customer_id, entries, entries[-1].cursor if more and entries else None)

    async def message(self, message_id: str) -> MessageRecord | None:
        blob = await self._redis.get(self._keys.message(message_id))
        return decode_message(blob) if blob else None

    async def find_customer_id(self, identifier: Identifier) -> str | None:
        found = await self._redis.get(self._keys.identity(identifier))
        return found.decode() if found else None


def _view(cursor: str, event: ThreadEvent, record: MessageRecord | None) -> ThreadEntryView:
    if isinstance(event, RoutingLogged):
        return ThreadEntryView(
            cursor=cursor,
            kind="routing",
            at=event.at,
            message_id=event.message_id,
            channel=event.channel,
            event=event.event,
            attempt_id=event.attempt_id,
            detail=event.detail,
            decision=event.decision,
            summary=routing_line(event.event, event.channel, event.detail, event.decision),
        )
    if isinstance(event, EventLogged):
        return ThreadEntryView(
            cursor=cursor,
            kind="event",
            at=event.at,
            event_id=event.event_id,
            name=event.name,
            properties=event.properties,
            summary=event_line(event.name),
        )
    if isinstance(event, NoteLogged):
        return ThreadEntryView(
            cursor=cursor,
            kind="note",
            at=event.at,
            message_id=event.note_id,
            body=event.body,
            agent=event.agent,
        )
    if isinstance(event, EngagementLogged):
        return ThreadEntryView(
            cursor=cursor,
            kind="engagement",
            at=event.at,
            message_id=event.message_id,
            channel=event.channel,
            engagement=event.kind,
            url=event.url,
            summary=engagement_line(event.kind, event.channel, event.url),
        )
    if isinstance(event, StatusLogged):
        return ThreadEntryView(
            cursor=cursor,
            kind="status",
            at=event.at,
            message_id=event.message_id,
            channel=event.channel,
            status=event.status,
            error_code=event.error_code,
        )
    view = ThreadEntryView(
        cursor=cursor,
        kind="message",
        at=event.at,
        message_id=event.message_id,
        channel=event.channel,
        direction=event.direction,
        session_id=event.session_id,
    )
    if record is not None:
        view.status = record.status
        view.body = record.body
        view.error_code = record.error_code
        view.provider = record.provider
        view.provider_message_id = record.provider_message_id
        view.address = record.address
        view.media = record.media
        view.location = record.location
        view.reply_payload = record.reply_payload
        view.segments = record.segments
        view.subject = record.subject
        view.encoding = record.encoding
        view.cost = record.cost
        view.created_at = record.created_at
        view.updated_at = record.updated_at
        view.channel = record.channel  # differs from the logged one when the send was adapted
        view.attributes = record.attributes
        view.rich_card = record.rich_card
        view.fallback_from = record.fallback_from
        view.fallback_reason = record.fallback_reason
    return view
