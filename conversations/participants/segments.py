"""Dynamic segments: memberships change in the batch that applies the change.

Each applied entry updates the customer's compact segment facts (event and engagement series)
and raises the topics it touched; at flush every touched customer's segments that read one of
those topics are re-evaluated (``conversations.segments.engine``). Entering or leaving is one
script per change on the shard's member set and count (count moves only when the set did, so
``count`` always equals the members listed), logged in the thread as ``segment_entered`` /
``segment_exited``; a time-based flip is a durable timer on the shard. A ``SegmentBackfill``
entry evaluates one segment over a chunk of the shard's customers and queues the next chunk
in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import msgspec
from redis.asyncio.client import Pipeline

from conversations import stream_entries, timers
from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.batch.resolution import identifier_of
from conversations.customer_hash import CustomerFacts, parse_customer_hash
from conversations.ids import ulid
from conversations.models import (
    Channel,
    ConsentRequest,
    Engagement,
    EventReceived,
    Forwarded,
    Identifier,
    InboundMessage,
    MessageStatus,
    OutboundRequest,
    SegmentBackfill,
    SegmentTimer,
)
from conversations.routing.context import ADDRESS_KINDS
from conversations.segments import membership
from conversations.segments.engine import (
    Catalog,
    SegmentFacts,
    decide,
    decode_facts,
    encode_facts,
    engagement_keys,
    timer_id,
)
from conversations.segments.registry import SegmentState, compile_stored, decode_stored
from conversations.segments.rules import Subject
from conversations.sharding import shard_for_customer
from conversations.store import Keys

log = logging.getLogger(__name__)

BACKFILL_CHUNK = 2000  # keys a backfill entry's SCAN step examines (COUNT; the keyspace is shared)
ENTERED, EXITED = "segment_entered", "segment_exited"
ENGAGEMENT_STATUSES = {MessageStatus.DELIVERED: "delivered", MessageStatus.READ: "read"}


@dataclass(slots=True)
class _Customer:
    """One customer's segment work during one batch."""

    facts: SegmentFacts
    topics: set[str] = field(default_factory=set)
    forced: set[str] = field(default_factory=set)
    handles: list[Identifier] = field(default_factory=list)
    profile: CustomerFacts | None = None  # backfill: the hash read for this chunk
    touched: bool = False
    quiet: bool = False  # only a backfill looked: no segment_entered/exited events


class SegmentEngine:
    """The segments participant of one shard."""

    def __init__(self, keys: Keys, shard: int) -> None:
        self._keys = keys
        self._shard = shard
        self._compiled: dict[tuple[str, int], SegmentState | None] = {}  # versions never change
        self._current: dict[str, int] = {}
        self._catalog = Catalog.of({})
        self._catalog_of: dict[str, int] | None = None  # the versions the catalog was built from
        self._customers: dict[str, _Customer] = {}
        self._chunks: dict[bytes, tuple[str, list[str]]] = {}  # backfill entry id -> (cursor, ids)

    # --- before the transaction -----------------------------------------------------

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        self._customers, self._chunks = {}, {}

        def keep_current(raw: dict[bytes, bytes]) -> None:
            self._current = {name.decode(): int(version) for name, version in raw.items()}

        reads.then(keep_current).hgetall(ctx.keys.segments())
        self._read_customers(ctx, reads, ctx.home_customers())
        for item in ctx.items:
            if isinstance(item.entry, SegmentBackfill):

                def keep_chunk(reply: tuple[int | bytes, list[bytes]], index: bytes = item.stream_id) -> None:
                    cursor, found = reply
                    prefix = len(ctx.keys.customer(""))
                    cursor_text = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
                    ids = (k.decode()[prefix:] for k in found)
                    mine = sorted(cid for cid in ids if shard_for_customer(cid, ctx.slot_map) == ctx.shard)
                    self._chunks[index] = (cursor_text, mine)

                pattern = ctx.keys.customers_pattern()
                reads.then(keep_chunk).scan(int(item.entry.cursor), match=pattern, count=BACKFILL_CHUNK)

    def _read_customers(self, ctx: BatchContext, reads: ReadQueue, customer_ids: list[str]) -> None:
        """Queue one MGET of the facts of those not read yet (and their preferences)."""
        fresh = [cid for cid in dict.fromkeys(customer_ids) if cid not in self._customers]
        if not fresh:
            return
        for customer_id in fresh:
            self._customers[customer_id] = _Customer(SegmentFacts())
            ctx.read_preferences(customer_id, reads)

        def keep(blobs: list[bytes | None]) -> None:
            for customer_id, blob in zip(fresh, blobs, strict=True):
                try:
                    self._customers[customer_id].facts = decode_facts(blob)
                except msgspec.DecodeError:
                    log.warning("unreadable segment facts of %s; starting afresh", customer_id)

        reads.then(keep).mget([ctx.keys.segment_facts(cid) for cid in fresh])

    def read_more(self, ctx: BatchContext, reads: ReadQueue) -> None:
        """Definitions not compiled yet, and the customers of backfill chunks."""
        for name, version in sorted(self._current.items()):
            if (name, version) in self._compiled:
                continue

            def keep_version(values: list[bytes | None], name: str = name, version: int = version) -> None:
                blob, epoch = values
                self._compiled[(name, version)] = self._compile(name, version, blob, epoch)

            reads.then(keep_version).hmget(ctx.keys.segment_versions(name), [str(version), "epoch"])
        chunk_ids = [cid for _, ids in self._chunks.values() for cid in ids]
        known = set(self._customers)
        self._read_customers(ctx, reads, chunk_ids)
        for customer_id in dict.fromkeys(chunk_ids):
            if customer_id in known or customer_id in ctx.customers:
                continue
            customer = self._customers[customer_id]

            def keep_hash(
                fields: dict[bytes, bytes], customer: _Customer = customer, cid: str = customer_id
            ) -> None:
                customer.profile = parse_customer_hash(cid, fields)

            reads.then(keep_hash).hgetall(ctx.keys.customer(customer_id))

    def _compile(
        self, name: str, version: int, blob: bytes | None, epoch: bytes | None
    ) -> SegmentState | None:
        if not blob or epoch is None:
            return None
        try:
            return compile_stored(name, version, int(epoch), decode_stored(blob))
        except (msgspec.DecodeError, ValueError):
            log.error("segment %s v%s cannot be compiled; skipped", name, version)
            return None

    def _ensure_catalog(self) -> Catalog:
        """The catalog of the definitions read for this batch (rebuilt only when they changed)."""
        if self._catalog_of == self._current:
            return self._catalog
        wanted = {
            name: state
            for name, version in self._current.items()
            if (state := self._compiled.get((name, version))) is not None
        }
        self._catalog = Catalog.of(wanted)
        self._catalog_of = dict(self._current)
        return self._catalog

    # --- inside the transaction -----------------------------------------------------

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = item.entry
        if isinstance(entry, SegmentBackfill):
            self._backfill(item, entry, ctx, tx)
            return
        customer = self._customers.get(item.customer_id) if item.customer_id else None
        if customer is None or item.held:
            return
        # Series are kept even before any segment reads them, so a later segment's backfill finds them.
        catalog = self._ensure_catalog()
        customer.touched = True
        customer.quiet = False  # a live entry: its changes are announced even beside a backfill
        now = ctx.now
        handle = identifier_of(entry)
        if handle is not None:
            customer.handles.append(handle)
        if isinstance(entry, EventReceived) and entry.name not in (ENTERED, EXITED):
            for key in catalog.event_keys(entry.name, entry.properties):
                customer.facts.record(key, entry.occurred_at, now)
            customer.topics.add(f"event:{entry.name}")
        elif isinstance(entry, InboundMessage):
            self._engaged(customer, "replied", entry.channel, entry.received_at, now)
            customer.topics |= {"reach", "prefers"}  # a keyword may have changed consent
        elif isinstance(entry, Engagement):
            record = ctx.records.get(entry.message_id)
            self._engaged(customer, entry.kind.value, record.channel if record else None, entry.at, now)
        elif isinstance(entry, SegmentTimer):
            if entry.everything:  # a merge: the facts changed wholesale
                customer.forced |= set(catalog.segments)
            customer.forced |= {name for name, at in customer.facts.checks.items() if at <= now}
        elif isinstance(entry, ConsentRequest | OutboundRequest):
            customer.topics |= {"reach", "prefers"}
        record, change = item.record, item.change
        if record is not None and change is not None and record.parent_id:  # attempts, as engagement does
            kind = ENGAGEMENT_STATUSES.get(change.status)
            if kind is not None:
                self._engaged(customer, kind, record.channel, change.at, now)

    def _engaged(
        self, customer: _Customer, kind: str, channel: Channel | None, at: float, now: float
    ) -> None:
        for key in engagement_keys(kind, channel):
            customer.facts.record(key, at, now)
        customer.topics.add(f"engagement:{kind}")

    def _backfill(self, item: BatchItem, entry: SegmentBackfill, ctx: BatchContext, tx: Pipeline) -> None:
        cursor, ids = self._chunks.get(item.stream_id, ("0", []))
        catalog = self._ensure_catalog()
        state = catalog.segments.get(entry.segment)
        if state is None or state.version != entry.version:
            return  # deleted, or superseded: the newer version runs its own backfill
        for customer_id in ids:
            customer = self._customers.get(customer_id)
            if customer is None:
                continue
            customer.forced.add(entry.segment)
            if not customer.touched:
                customer.quiet = True
            customer.touched = True
        if cursor == "0":
            tx.hset(ctx.keys.segment_backfilled(ctx.shard), entry.segment, entry.version)
        else:
            next_chunk = SegmentBackfill(entry.segment, entry.version, cursor)
            stream_entries.append(tx, ctx.keys.ingest(ctx.shard), next_chunk)

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        catalog = self._ensure_catalog()
        written: dict[str, bytes] = {}
        changes: list[tuple[str, str, int]] = []  # one script for the batch's membership changes
        for customer_id, customer in sorted(self._customers.items()):
            if not customer.touched:
                continue
            subject = self._subject(ctx, customer_id, customer)
            decision = decide(catalog, customer.facts, subject, customer.topics, customer.forced, ctx.now)
            for name, delta in [(n, 1) for n in decision.entered] + [(n, -1) for n in decision.left]:
                changes.append((name, customer_id, delta))
                if not customer.quiet:
                    self._announce(ctx, tx, customer_id, name, delta, catalog.segments[name].version)
            if decision.timer_changed:
                if decision.timer_due is None:
                    timers.cancel(tx, ctx.keys, ctx.shard, timer_id(customer_id))
                else:
                    due = decision.timer_due
                    timers.schedule(
                        tx, ctx.keys, ctx.shard, timer_id(customer_id), due, SegmentTimer(customer_id, due)
                    )
            written[ctx.keys.segment_facts(customer_id)] = encode_facts(customer.facts)
        membership.move_many(tx, ctx.keys, ctx.shard, changes)
        if written:
            tx.mset(written)
        self._customers, self._chunks = {}, {}

    def _announce(
        self, ctx: BatchContext, tx: Pipeline, customer_id: str, name: str, delta: int, version: int
    ) -> None:
        """Entering or leaving is an event, applied next like a backend's: it joins the thread and
        journeys can start on it (``trigger: {event: segment_entered, filter: [{property: segment,
        op: eq, value: NAME}]}``)."""
        kind = ENTERED if delta == 1 else EXITED
        event = EventReceived(
            f"evt_{ulid(ctx.now)}", kind, ctx.now, ctx.now, None, {"segment": name, "version": version}
        )
        stream_entries.append(tx, ctx.keys.ingest(ctx.shard), Forwarded(customer_id, event))

    def _subject(self, ctx: BatchContext, customer_id: str, customer: _Customer) -> Subject:
        profile = ctx.customers.get(customer_id) or customer.profile or CustomerFacts(customer_id=customer_id)
        identifiers = list(profile.identifiers) + customer.handles
        addresses = frozenset(
            channel for channel, kinds in ADDRESS_KINDS.items() if any(i.kind in kinds for i in identifiers)
        )
        created_at = profile.created_at
        if created_at is None and customer.handles:  # created by this batch
            created_at = ctx.now
        return Subject(
            attributes=dict(profile.attributes),
            created_at=created_at,
            series=customer.facts.series,
            preferences=ctx.preferences.get(customer_id),
            addresses=addresses,
        )
