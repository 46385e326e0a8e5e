"""Applying a batch of ingest entries to one shard's customers, in one Redis transaction.

The shard actor reads a batch from its ingest stream and hands it here. Reads (identity
resolution, message records) happen first in one pipeline; then every write of the batch,
together with the XACK/XDEL of its ingest entries, goes in one MULTI/EXEC. A crash before
EXEC leaves the entries pending, and the replay writes them once; a crash after EXEC leaves
nothing to replay. So each entry takes effect exactly once.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis

from conversations import timers
from conversations.codec import decode_ingest, decode_message, decode_preferences, encode
from conversations.consent import write_preferences
from conversations.ids import new_customer_id, new_message_id
from conversations.journeys.runner import JourneyRunner
from conversations.keywords import Keyword, KeywordReplies, classify
from conversations.models import (
    Channel,
    Direction,
    Engagement,
    EngagementKind,
    EngagementLogged,
    EventLogged,
    EventReceived,
    Forwarded,
    Identifier,
    InboundMessage,
    IngestEntry,
    JourneyHandback,
    JourneyTimer,
    MessageLogged,
    MessageRecord,
    MessageStatus,
    OutboundRequest,
    RoutingTimer,
    SendOutcome,
    ShardEntry,
    StatusChange,
    StatusLogged,
    StatusUpdate,
)
from conversations.outbound import OutboundRouter, RoutingBatch
from conversations.preferences import ConsentChange, ConsentState, Preferences
from conversations.sessions import SESSION_FIELDS, Session, parse_session, session_for
from conversations.sharding import shard_for_customer
from conversations.status import advances
from conversations.store import CONSUMER_GROUP, INGEST_FIELD, Keys

log = logging.getLogger(__name__)

PROVIDER_ID_TTL = 90 * 24 * 3600
MAX_STATUS_PARKING = 8  # ~1 minute of retries for a status that arrives before its send outcome


@dataclass(slots=True)
class BatchResult:
    """What one batch did, for metrics and for pushing updates to agents."""

    applied: int = 0
    forwarded: int = 0
    dead: int = 0
    sends_queued: int = 0
    touched_customers: set[str] = field(default_factory=set)
    inbound: dict[str, int] = field(default_factory=dict)  # customer id -> inbound messages applied
    outbound: set[str] = field(default_factory=set)  # customers who were sent a new message


BatchHook = Callable[[Any, BatchResult, float], None]
"""Adds writes to a batch's transaction once it is applied: ``hook(pipeline, result, now)``."""


@dataclass(slots=True)
class _Work:
    """One decoded entry with the customer it belongs to once resolved."""

    stream_id: bytes
    entry: ShardEntry
    customer_id: str = ""


class IngestProcessor:
    """Applies ingest batches for one shard."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        shard: int,
        shards: int,
        clock: Callable[[], float] = time.time,
        keyword_replies: KeywordReplies | None = None,
        session_idle_seconds: float = 24 * 3600,
        on_commit: BatchHook | None = None,
        router: OutboundRouter | None = None,
    ) -> None:
        self._session_idle = session_idle_seconds
        self._sessions: dict[str, Session | None] = {}  # this batch's customers' sessions
        self._keyword_replies = keyword_replies or KeywordReplies()
        self._redis = redis
        # Routing (and how attempts are rendered) is configured on the router it is given.
        self._router = router or OutboundRouter(redis, keys, shard, shards)
        self._keys = keys
        self._shard = shard
        self._shards = shards
        self._clock = clock
        self._ingest_key = keys.ingest(shard)
        self._on_commit = on_commit
        self._journeys = JourneyRunner(redis, keys, shard)

    async def process(self, raw_batch: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> BatchResult:
        """Apply a batch read from the ingest stream; acks it in the same transaction."""
        result = BatchResult()
        work: list[_Work] = []
        dead: list[tuple[bytes, bytes]] = []
        acked_only: list[bytes] = []
        for stream_id, fields in raw_batch:
            if not fields:  # already deleted: a replay of an entry whose batch committed
                acked_only.append(stream_id)
                continue
            payload = fields.get(INGEST_FIELD, b"")
            try:
                entry = decode_ingest(payload)
            except msgspec.DecodeError:
                log.error("shard %s: undecodable ingest entry %r", self._shard, stream_id)
                dead.append((stream_id, payload))
                continue
            if isinstance(entry, Forwarded):
                work.append(_Work(stream_id, entry.entry, entry.customer_id))
            elif isinstance(
                entry, StatusUpdate | SendOutcome | Engagement | RoutingTimer | JourneyTimer | JourneyHandback
            ):
                work.append(_Work(stream_id, entry, entry.customer_id))  # "" until matched
            else:
                work.append(_Work(stream_id, entry))

        await self._resolve_customers(work)
        await self._resolve_provider_ids(work)
        records = await self._load_records(work)
        for item in work:  # the message record names its customer (authoritative after a merge)
            entry = item.entry
            if isinstance(entry, StatusUpdate | SendOutcome) and entry.message_id in records:
                item.customer_id = records[entry.message_id].customer_id
                item.entry = msgspec.structs.replace(entry, customer_id=item.customer_id)
        await self._follow_redirects(work)

        preferences = await self._load_preferences(work)
        await self._load_sessions(work)
        await self._journeys.prepare([(item.customer_id, item.entry) for item in work if item.customer_id])
        now = self._clock()
        routing = await self._router.prepare([(item.customer_id, item.entry) for item in work], records, now)
        pipe = self._redis.pipeline(transaction=True)
        for item in work:
            home = shard_for_customer(item.customer_id, self._shards)
            entry = item.entry
            if home is not None and home != self._shard:
                forwarded = Forwarded(customer_id=item.customer_id, entry=entry)
                pipe.xadd(self._keys.ingest(home), {INGEST_FIELD: encode(forwarded)})
                result.forwarded += 1
                continue
            refused = False
            if isinstance(entry, InboundMessage):
                self._write_inbound(pipe, item.customer_id, entry, now)
                self._router.saw_inbound(routing, item.customer_id, entry.channel, entry.received_at)
                result.inbound[item.customer_id] = result.inbound.get(item.customer_id, 0) + 1
                if entry.channel is Channel.SMS:
                    self._handle_keyword(pipe, routing, item.customer_id, entry, preferences, now)
            elif isinstance(entry, OutboundRequest):
                session_id = self._session_id(item.customer_id, entry.requested_at)
                if self._write_outbound(pipe, routing, item.customer_id, entry, now, session_id):
                    result.sends_queued += 1
                else:
                    refused = True
                result.outbound.add(item.customer_id)
            elif isinstance(entry, StatusUpdate):
                if entry.message_id not in records:
                    self._park_status(pipe, entry, now)
                    continue
                self._write_status(pipe, records, entry)
                self._router.after_update(pipe, routing, records[entry.message_id], now)
            elif isinstance(entry, SendOutcome):
                self._write_send_outcome(pipe, records, entry)
                if entry.message_id in records:
                    self._router.after_update(pipe, routing, records[entry.message_id], now)
            elif isinstance(entry, RoutingTimer):
                self._router.on_timer(pipe, routing, entry, now)
            elif isinstance(entry, Engagement):
                self._write_engagement(pipe, records, routing, entry)
            elif isinstance(entry, EventReceived):
                self._write_event(pipe, item.customer_id, entry, now)
            # Journeys see every applied entry (events, replies, statuses, their timers).
            self._journeys.observe(pipe, item.customer_id, _as_message(entry, records), now, refused)
            result.applied += 1
            result.touched_customers.add(item.customer_id)
        for customer_id, session in self._sessions.items():
            if session is not None:
                pipe.hset(
                    self._keys.customer(customer_id),
                    mapping={"session_id": session.id, "session_last_at": repr(session.last_at)},
                )
        self._journeys.flush(pipe)
        for stream_id, payload in dead:
            pipe.xadd(self._keys.dead_letters(self._shard), {INGEST_FIELD: payload, b"id": stream_id})
        result.dead = len(dead)
        if self._on_commit is not None and result.touched_customers:
            # Inside the same MULTI/EXEC, so an update is published exactly when the batch lands.
            self._on_commit(pipe, result, now)
        ids = [item.stream_id for item in work] + [sid for sid, _ in dead] + acked_only
        if ids:
            pipe.xack(self._ingest_key, CONSUMER_GROUP, *ids)
            pipe.xdel(self._ingest_key, *ids)
        await pipe.execute()
        return result

    async def _resolve_customers(self, work: list[_Work]) -> None:
        """Find or create the customer of every entry that names only an identifier.

        ``SET NX GET`` makes find-or-create one atomic command per identifier, so two shards
        (or a replay) can never create two customers for one phone number.
        """
        wanted: dict[Identifier, str] = {}
        for item in work:
            if item.customer_id:
                continue
            identifier = _identifier_of(item.entry)
            if identifier is not None and identifier not in wanted:
                wanted[identifier] = new_customer_id(self._shard)
        if not wanted:
            return
        pipe = self._redis.pipeline(transaction=False)
        for identifier, candidate in wanted.items():
            pipe.set(self._keys.identity(identifier), candidate, nx=True, get=True)
        existing = await pipe.execute()
        resolved = {
            identifier: (found.decode() if found else candidate)
            for (identifier, candidate), found in zip(wanted.items(), existing, strict=True)
        }
        for item in work:
            if not item.customer_id:
                identifier = _identifier_of(item.entry)
                if identifier is not None:
                    item.customer_id = resolved[identifier]

    async def dead_letter(self, entry: tuple[bytes, dict[bytes, bytes]]) -> None:
        """Set one entry aside on the shard's dead-letter stream and ack it (nothing is lost)."""
        stream_id, fields = entry
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(
            self._keys.dead_letters(self._shard),
            {INGEST_FIELD: (fields or {}).get(INGEST_FIELD, b""), b"id": stream_id},
        )
        pipe.xack(self._ingest_key, CONSUMER_GROUP, stream_id)
        pipe.xdel(self._ingest_key, stream_id)
        await pipe.execute()

    async def _load_preferences(self, work: list[_Work]) -> dict[str, Preferences]:
        """Preferences of the customers whose consent a keyword in this batch changes (routing
        reads its own for sends, in its customer context)."""
        wanted = sorted(
            {
                item.customer_id
                for item in work
                if item.customer_id
                and isinstance(item.entry, InboundMessage)
                and classify(item.entry.body) is not None
            }
        )
        if not wanted:
            return {}
        blobs = await self._redis.mget([self._keys.preferences(cid) for cid in wanted])
        return {cid: decode_preferences(blob) for cid, blob in zip(wanted, blobs, strict=True) if blob}

    def _handle_keyword(
        self,
        pipe,
        routing: RoutingBatch,
        customer_id: str,
        entry: InboundMessage,
        preferences: dict[str, Preferences],
        now: float,
    ) -> None:
        """STOP/START change SMS consent (audited); every keyword gets its confirmation reply."""
        found = classify(entry.body)
        if found is None:
            return
        keyword, word = found
        if keyword is not Keyword.HELP:
            before = preferences.get(customer_id)
            after = copy.deepcopy(before) if before else Preferences()
            state = ConsentState.OPTED_OUT if keyword is Keyword.OPT_OUT else ConsentState.OPTED_IN
            change = ConsentChange(Channel.SMS, state, f"sms_keyword:{word}", entry.received_at)
            after.apply(change)
            write_preferences(pipe, self._keys, customer_id, before, after, [change])
            preferences[customer_id] = after
            self._router.consent_changed(routing, customer_id, after)  # later sends in this batch
        reply = self._keyword_replies.for_keyword(keyword)
        # Keyword confirmations are transactional: they go out even to a number that just opted out.
        request = OutboundRequest(new_message_id(), entry.sender, reply, "transactional", now, Channel.SMS)
        self._router.request(pipe, routing, customer_id, request, now, self._session_id(customer_id, now))

    async def _load_sessions(self, work: list[_Work]) -> None:
        wanted = sorted(
            {
                item.customer_id
                for item in work
                if item.customer_id and isinstance(item.entry, InboundMessage | OutboundRequest)
            }
        )
        self._sessions = {}
        if not wanted:
            return
        pipe = self._redis.pipeline(transaction=False)
        for customer_id in wanted:
            pipe.hmget(self._keys.customer(customer_id), SESSION_FIELDS)
        for customer_id, values in zip(wanted, await pipe.execute(), strict=True):
            self._sessions[customer_id] = parse_session(values)

    def _session_id(self, customer_id: str, at: float) -> str:
        """The conversation session a message at ``at`` joins (opening one after an idle gap)."""
        session, _opened = session_for(self._sessions.get(customer_id), at, self._session_idle)
        self._sessions[customer_id] = session
        return session.id

    async def _follow_redirects(self, work: list[_Work]) -> None:
        """Entries for a customer merged into another go to the survivor (and its home shard)."""
        for _ in range(4):  # chains are short: A merged into B, later B into C
            ids = sorted({item.customer_id for item in work if item.customer_id})
            if not ids:
                return
            targets = await self._redis.mget([self._keys.redirect(cid) for cid in ids])
            moved = {cid: t.decode() for cid, t in zip(ids, targets, strict=True) if t}
            if not moved:
                return
            for item in work:
                if item.customer_id in moved:
                    item.customer_id = moved[item.customer_id]
                    if isinstance(item.entry, StatusUpdate | SendOutcome):
                        item.entry = msgspec.structs.replace(item.entry, customer_id=item.customer_id)

    async def _resolve_provider_ids(self, work: list[_Work]) -> None:
        """Fill in our message id for statuses that only name the provider's id."""
        unmatched = [
            item for item in work if isinstance(item.entry, StatusUpdate) and not item.entry.message_id
        ]
        if not unmatched:
            return
        found = await self._redis.mget(
            [
                self._keys.provider_message(item.entry.provider, item.entry.provider_message_id)
                for item in unmatched
                if isinstance(item.entry, StatusUpdate)
            ]
        )
        for item, message_id in zip(unmatched, found, strict=True):
            if message_id and isinstance(item.entry, StatusUpdate):
                item.entry = msgspec.structs.replace(item.entry, message_id=message_id.decode())

    def _park_status(self, pipe, entry: StatusUpdate, now: float) -> None:
        """A status that outran its send outcome: retry it later, then give up loudly."""
        if entry.attempt >= MAX_STATUS_PARKING:
            log.warning(
                "dropping status %s for unknown %s message %s",
                entry.provider_status,
                entry.provider,
                entry.provider_message_id,
            )
            return
        delay = min(30.0, 0.25 * 2**entry.attempt)
        timer_id = f"status:{entry.provider}:{entry.provider_message_id}:{entry.provider_status}"
        retry = msgspec.structs.replace(entry, attempt=entry.attempt + 1)
        timers.schedule(pipe, self._keys, self._shard, timer_id, now + delay, retry)

    async def _load_records(self, work: list[_Work]) -> dict[str, MessageRecord]:
        wanted = sorted(
            {
                item.entry.message_id
                for item in work
                if isinstance(item.entry, StatusUpdate | SendOutcome | Engagement) and item.entry.message_id
            }
        )
        if not wanted:
            return {}
        raw = await self._redis.mget([self._keys.message(mid) for mid in wanted])
        return {mid: decode_message(data) for mid, data in zip(wanted, raw, strict=True) if data}

    def _touch_customer(self, pipe, customer_id: str, identifier: Identifier, now: float) -> dict:
        key = self._keys.customer(customer_id)
        pipe.hsetnx(key, "created_at", repr(now))
        return {"updated_at": repr(now), f"ident:{identifier.kind.value}:{identifier.value}": "1"}

    def _write_inbound(self, pipe, customer_id: str, entry: InboundMessage, now: float) -> None:
        message_id = new_message_id()
        record = MessageRecord(
            id=message_id,
            customer_id=customer_id,
            channel=entry.channel,
            direction=Direction.INBOUND,
            body=entry.body,
            status=MessageStatus.RECEIVED,
            created_at=entry.received_at,
            updated_at=now,
            provider=entry.provider,
            provider_message_id=entry.provider_message_id,
            address=entry.sender.value,
            media=entry.media,
            attributes=dict(entry.attributes),
            location=entry.location,
            reply_payload=entry.reply_payload,
            subject=entry.subject,
            html=entry.html,
        )
        pipe.set(self._keys.message(message_id), encode(record))
        pipe.set(
            self._keys.provider_message(entry.provider, entry.provider_message_id),
            message_id,
            ex=PROVIDER_ID_TTL,
        )
        session_id = self._session_id(customer_id, entry.received_at)
        logged = MessageLogged(message_id, entry.channel, Direction.INBOUND, entry.received_at, session_id)
        pipe.xadd(self._keys.thread(customer_id), {INGEST_FIELD: encode(logged)})
        fields = self._touch_customer(pipe, customer_id, entry.sender, now)
        fields["last_channel"] = entry.channel.value
        fields[f"last_inbound_at:{entry.channel.value}"] = repr(entry.received_at)
        if entry.profile_name:
            fields["profile_name"] = entry.profile_name
        pipe.hset(self._keys.customer(customer_id), mapping=fields)
        self._router.record_reply(pipe, customer_id, entry.channel, entry.received_at)

    def _write_event(self, pipe, customer_id: str, entry: EventReceived, now: float) -> None:
        """A backend event joins the customer's history (journeys see it right after)."""
        if not customer_id:  # neither an identifier nor a customer id: nobody to attach it to
            log.warning("shard %s: event %s names no customer; dropped", self._shard, entry.event_id)
            return
        if entry.customer is not None:
            fields = self._touch_customer(pipe, customer_id, entry.customer, now)
            pipe.hset(self._keys.customer(customer_id), mapping=fields)
        # Readers assume an entry's time is never after its write (``since`` scans by stream id).
        logged = EventLogged(entry.event_id, entry.name, min(entry.occurred_at, now), entry.properties)
        pipe.xadd(self._keys.thread(customer_id), {INGEST_FIELD: encode(logged)})

    def _write_outbound(
        self,
        pipe,
        routing: RoutingBatch,
        customer_id: str,
        entry: OutboundRequest,
        now: float,
        session_id: str = "",
    ) -> bool:
        """Routing decides the channel chain and queues the first attempt (conversations.outbound);
        False when routing refused the message outright."""
        self._router.request(pipe, routing, customer_id, entry, now, session_id)
        fields = self._touch_customer(pipe, customer_id, entry.recipient, now)
        pipe.hset(self._keys.customer(customer_id), mapping=fields)
        parent = routing.parents.get(entry.message_id)
        return not (parent is not None and parent.routing is not None and parent.routing.state == "refused")

    def _apply_status(
        self,
        pipe,
        record: MessageRecord,
        status: MessageStatus,
        at: float,
        provider_status: str,
        error_code: str,
    ) -> None:
        record.history.append(StatusChange(status, at, provider_status, error_code))
        record.updated_at = max(record.updated_at, at)
        if advances(record.status, status):
            record.status = status
            if error_code:
                record.error_code = error_code
        logged = StatusLogged(record.parent_id or record.id, record.channel, status, at, error_code)
        pipe.xadd(self._keys.thread(record.customer_id), {INGEST_FIELD: encode(logged)})

    def _write_status(self, pipe, records: dict[str, MessageRecord], entry: StatusUpdate) -> None:
        record = records[entry.message_id]
        if not record.provider_message_id:
            record.provider = entry.provider
            record.provider_message_id = entry.provider_message_id
        self._apply_status(pipe, record, entry.status, entry.at, entry.provider_status, entry.error_code)
        if entry.error_message:
            record.error_message = entry.error_message
        pipe.set(self._keys.message(record.id), encode(record))

    def _write_send_outcome(self, pipe, records: dict[str, MessageRecord], entry: SendOutcome) -> None:
        record = records.get(entry.message_id)
        if record is None:
            log.warning("send outcome for unknown message %s", entry.message_id)
            return
        record.provider = entry.provider
        if entry.channel is not None and entry.channel != record.channel:
            # The sender adapted the message to another channel: the record shows what the
            # customer actually got, and why.
            record.fallback_from = entry.fallback_from or record.channel
            record.fallback_reason = entry.fallback_reason
            record.channel = entry.channel
            if entry.body:
                record.body = entry.body
        if entry.provider_message_id:
            record.provider_message_id = entry.provider_message_id
            pipe.set(
                self._keys.provider_message(entry.provider, entry.provider_message_id),
                record.id,
                ex=PROVIDER_ID_TTL,
            )
        if entry.segments:
            record.segments = entry.segments
        if entry.price is not None:
            record.price = entry.price
        if entry.error_message:
            record.error_message = entry.error_message
        self._apply_status(pipe, record, entry.status, entry.at, "", entry.error_code)
        pipe.set(self._keys.message(record.id), encode(record))

    def _write_engagement(
        self, pipe, records: dict[str, MessageRecord], routing: RoutingBatch, entry: Engagement
    ) -> None:
        record = records.get(entry.message_id)
        if record is None or record.customer_id != entry.customer_id:
            log.warning("engagement for unknown message %s", entry.message_id)
            return
        # The attempt that carried the link, and the message it carried, both count it.
        parent = routing.parents.get(record.parent_id) if record.parent_id else None
        for target in (record, parent):
            if target is None:
                continue
            if target.opened_at is None:  # a click proves the message was opened too
                target.opened_at = entry.at
            if entry.kind is EngagementKind.CLICKED:
                target.clicks += 1
            pipe.set(self._keys.message(target.id), encode(target))
        logged = EngagementLogged(
            record.parent_id or record.id, record.channel, entry.kind, entry.at, entry.url
        )
        pipe.xadd(self._keys.thread(record.customer_id), {INGEST_FIELD: encode(logged)})


def _as_message(entry, records: dict[str, MessageRecord]):
    """A provider report on a routing attempt, as a report on the message the attempt carries
    (what journeys and other observers know)."""
    if isinstance(entry, StatusUpdate | SendOutcome | Engagement):
        record = records.get(entry.message_id)
        if record is not None and record.parent_id:
            return msgspec.structs.replace(entry, message_id=record.parent_id)
    return entry


def _identifier_of(entry: IngestEntry) -> Identifier | None:
    if isinstance(entry, InboundMessage):
        return entry.sender
    if isinstance(entry, OutboundRequest):
        return entry.recipient
    if isinstance(entry, EventReceived):
        return entry.customer
    return None
