"""Reading a customer's one thread (all channels, in order) and their profile."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from conversations.codec import decode_message, decode_thread_event
from conversations.models import (
    Channel,
    Customer,
    Direction,
    Identifier,
    IdentifierKind,
    Media,
    MessageLogged,
    MessageRecord,
    MessageStatus,
    RoutingDecision,
    RoutingLogged,
    StatusLogged,
)
from conversations.store import INGEST_FIELD, Keys

MAX_PAGE = 500


class ThreadEntryView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One thread entry as the API shows it; ``cursor`` resumes a page after this entry."""

    cursor: str
    kind: str  # "message", "status" or "routing"
    at: float
    message_id: str
    channel: Channel
    direction: Direction | None = None
    status: MessageStatus | None = None
    body: str | None = None
    error_code: str = ""
    provider: str = ""
    provider_message_id: str = ""
    address: str = ""
    media: tuple[Media, ...] = ()
    segments: int = 0
    created_at: float | None = None
    updated_at: float | None = None
    event: str = ""  # routing: decided, deferred, refused, attempt, timeout, fallback, succeeded, …
    attempt_id: str = ""
    detail: str = ""
    decision: RoutingDecision | None = None


class ThreadPage(msgspec.Struct):
    """One page of a thread."""

    customer_id: str
    entries: list[ThreadEntryView]
    next_cursor: str | None = None


def is_valid_cursor(cursor: str) -> bool:
    """A cursor is a Redis stream id, ``<ms>-<seq>``."""
    ms, sep, seq = cursor.partition("-")
    return bool(sep) and ms.isdigit() and seq.isdigit()


class ThreadReader:
    """Read-only access to threads, messages and customers (used by the HTTP API)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def page(self, customer_id: str, cursor: str | None, limit: int) -> ThreadPage:
        """Entries after ``cursor`` (exclusive), oldest first, at most ``limit``."""
        limit = max(1, min(limit, MAX_PAGE))
        start = f"({cursor}" if cursor else "-"
        raw = await self._redis.xrange(self._keys.thread(customer_id), min=start, count=limit + 1)
        more = len(raw) > limit
        raw = raw[:limit]
        events = [(sid.decode(), decode_thread_event(fields[INGEST_FIELD])) for sid, fields in raw]
        message_ids = sorted({event.message_id for _, event in events})
        records: dict[str, MessageRecord] = {}
        if message_ids:
            blobs = await self._redis.mget([self._keys.message(mid) for mid in message_ids])
            records = {mid: decode_message(b) for mid, b in zip(message_ids, blobs, strict=True) if b}
        entries = [_view(sid, event, records.get(event.message_id)) for sid, event in events]
        return ThreadPage(customer_id, entries, entries[-1].cursor if more and entries else None)

    async def message(self, message_id: str) -> MessageRecord | None:
        blob = await self._redis.get(self._keys.message(message_id))
        return decode_message(blob) if blob else None

    async def find_customer_id(self, identifier: Identifier) -> str | None:
        found = await self._redis.get(self._keys.identity(identifier))
        return found.decode() if found else None

    async def customer(self, customer_id: str) -> Customer | None:
        fields = await self._redis.hgetall(self._keys.customer(customer_id))
        if not fields:
            return None
        decoded = {k.decode(): v.decode() for k, v in fields.items()}
        identifiers = []
        for name in decoded:
            if name.startswith("ident:"):
                _, kind, value = name.split(":", 2)
                identifiers.append(Identifier(IdentifierKind(kind), value))
        return Customer(
            id=customer_id,
            created_at=float(decoded.get("created_at", "0")),
            identifiers=sorted(identifiers, key=lambda i: (i.kind.value, i.value)),
        )


def _view(
    cursor: str, event: MessageLogged | StatusLogged | RoutingLogged, record: MessageRecord | None
) -> ThreadEntryView:
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
    )
    if record is not None:
        view.status = record.status
        view.body = record.body
        view.error_code = record.error_code
        view.provider = record.provider
        view.provider_message_id = record.provider_message_id
        view.address = record.address
        view.media = record.media
        view.segments = record.segments
        view.created_at = record.created_at
        view.updated_at = record.updated_at
    return view
