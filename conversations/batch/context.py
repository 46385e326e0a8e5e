"""What the participants of one batch share: its items, what was read for them, what they produced.

A participant keeps its own per-batch state to itself; anything another participant needs (a
message record, the customer's facts, a consent change, a thread line) is here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio.client import Pipeline

from conversations.codec import decode_preferences
from conversations.customer_hash import CustomerFacts, CustomerHashWrites
from conversations.models import MessageRecord, ShardEntry, StatusChange, ThreadEvent
from conversations.preferences import Preferences
from conversations.slots import SlotMap
from conversations.store import Keys

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchItem:
    """One entry of the batch, with the customer it belongs to once resolved."""

    stream_id: bytes
    entry: ShardEntry
    customer_id: str = ""
    home: bool = True  # the customer lives on this shard (else the entry is forwarded)
    # Set while the entry is applied, for the participants after the one that set it:
    record: MessageRecord | None = None  # the message record a status/outcome changed
    change: StatusChange | None = None  # the status change it took
    held: bool = False  # set aside for later (a status that outran its send): nothing else applies
    refused: bool = False  # an outbound request routing refused outright
    session_id: str = ""  # the conversation session a message joins


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
    notes: dict[str, str] = field(default_factory=dict)  # customer id -> agent who added a note


class ReadQueue:
    """The batch's shared read pipeline: each queued command comes with what to do with its reply."""

    def __init__(self, pipe: Pipeline) -> None:
        self._pipe = pipe
        self._callbacks: list[Callable[[Any], None]] = []

    def then(self, callback: Callable[[Any], None]) -> Pipeline:
        """The pipeline to queue exactly one command on; its reply goes to ``callback``."""
        self._callbacks.append(callback)
        return self._pipe

    def __len__(self) -> int:
        return len(self._callbacks)

    async def run(self) -> None:
        """One round trip for every queued read; then each reply to its callback, in order."""
        if not self._callbacks:
            return
        replies = await self._pipe.execute()
        if len(replies) != len(self._callbacks):
            raise RuntimeError(f"{len(replies)} replies for {len(self._callbacks)} queued reads")
        for callback, reply in zip(self._callbacks, replies, strict=True):
            callback(reply)


@dataclass(slots=True)
class BatchContext:
    """Everything the participants of one batch share."""

    keys: Keys
    shard: int
    slot_map: SlotMap  # which slots are this shard's, and where the others live
    now: float
    items: list[BatchItem]
    records: dict[str, MessageRecord] = field(default_factory=dict)  # one object per record
    customers: dict[str, CustomerFacts] = field(default_factory=dict)  # home customers' hashes
    preferences: dict[str, Preferences] = field(default_factory=dict)  # read for who needs them
    result: BatchResult = field(default_factory=BatchResult)
    customer_writes: CustomerHashWrites = field(default_factory=CustomerHashWrites)
    insert_at: int = 0  # where ``add_item`` puts an item: right after the one being applied
    _preferences_read: set[str] = field(default_factory=set)
    _dirty_records: dict[str, MessageRecord] = field(default_factory=dict)
    _thread: list[tuple[str, ThreadEvent]] = field(default_factory=list)

    def home_customers(self) -> list[str]:
        """The customers of this batch that live on this shard, sorted."""
        return sorted({item.customer_id for item in self.items if item.customer_id and item.home})

    def facts(self, customer_id: str) -> CustomerFacts:
        """The customer's facts as read (and updated by this batch so far)."""
        found = self.customers.get(customer_id)
        if found is None:
            found = self.customers[customer_id] = CustomerFacts(customer_id=customer_id)
        return found

    def read_preferences(self, customer_id: str, reads: ReadQueue) -> None:
        """Queue a read of the customer's preferences into ``preferences`` (once per batch)."""
        if customer_id in self._preferences_read:
            return
        self._preferences_read.add(customer_id)

        def keep(blob: bytes | None) -> None:
            if blob:
                try:
                    self.preferences[customer_id] = decode_preferences(blob)
                except msgspec.DecodeError:
                    log.warning("unreadable preferences of %s; treated as none", customer_id)

        reads.then(keep).get(self.keys.preferences(customer_id))

    def add_item(self, customer_id: str, entry: ShardEntry) -> None:
        """Apply ``entry`` next in this batch, as if it had arrived (e.g. a keyword's reply)."""
        self.items.insert(self.insert_at, BatchItem(b"", entry, customer_id))
        self.insert_at += 1

    def save(self, record: MessageRecord) -> None:
        """Store ``record`` at the end of the batch (once, however often it changed)."""
        self.records[record.id] = record
        self._dirty_records[record.id] = record

    def log(self, customer_id: str, event: ThreadEvent) -> None:
        """Append ``event`` to the customer's thread (in the order participants log)."""
        self._thread.append((customer_id, event))

    def take_dirty_records(self) -> list[MessageRecord]:
        records, self._dirty_records = list(self._dirty_records.values()), {}
        return records

    def take_thread(self) -> list[tuple[str, ThreadEvent]]:
        events, self._thread = self._thread, []
        return events
