"""Running journeys inside a shard's batch: load before the transaction, write inside it.

A batch participant: ``read`` queues which journeys the batch's customers are on (with every
other participant's reads), ``read_more`` loads those instances (a round trip taken only when a
customer of the batch is on a journey), ``apply`` turns each entry into stimuli, and ``flush``
writes the changed instances. Every journey write -
instance state, timers, sends, attribute updates, counters - joins the batch's MULTI/EXEC,
so a stimulus takes effect exactly once, like the entry that carried it.

Sends are written as the backend's would be: an ``OutboundRequest`` (message type, optional
pinned channel) on this shard's ingest stream, wrapped in a ``Forwarded`` naming the customer.
The next batch applies it through the same path as ``POST /v1/messages`` (consent, and routing
once it lands), and its outcome and statuses come back here as stimuli.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import msgspec
from redis.asyncio.client import Pipeline

from conversations import stream_entries, timers
from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.codec import encode
from conversations.customer_hash import CustomerFacts, CustomerHashWrites, encode_attribute
from conversations.ids import ulid
from conversations.journeys.definition import DefinitionError, Journey
from conversations.journeys.handoff import ACTIVE, ASSIGNEE_FIELD, AUTOMATION_FIELD, PAUSED
from conversations.journeys.instance import (
    CancelTimer,
    Count,
    Effect,
    EventSeen,
    EventSnapshot,
    Finish,
    HandBack,
    HandedBack,
    HandOff,
    Instance,
    JourneyCustomer,
    ReplySeen,
    ScheduleTimer,
    SendJourneyMessage,
    SetAttributes,
    Start,
    StatusSeen,
    Stimulus,
    TimerFired,
    decode_instance,
)
from conversations.journeys.machine import advance, may_enter, new_instance, stop, triggers
from conversations.journeys.registry import StoredVersion, compile_stored
from conversations.models import (
    Engagement,
    EngagementKind,
    EventReceived,
    Forwarded,
    InboundMessage,
    JourneyHandback,
    JourneyTimer,
    MessageRecord,
    MessageStatus,
    OutboundRequest,
    SendOutcome,
    ShardEntry,
    StatusUpdate,
)
from conversations.store import Keys

log = logging.getLogger(__name__)

FINISHED_TTL = 90 * 24 * 3600  # finished instances stay readable this long
HISTORY_KEEP = 200  # instance ids remembered per customer

_OUTCOMES = {
    MessageStatus.SENT: "sent",
    MessageStatus.DELIVERED: "delivered",
    MessageStatus.READ: "read",
    MessageStatus.FAILED: "failed",
    MessageStatus.UNDELIVERED: "failed",
}


def timer_id(instance_id: str, token: int) -> str:
    """The durable timer of one wait of one instance."""
    return f"journey:{instance_id}:{token}"


@dataclass(slots=True)
class _Customer:
    """One customer's journeys during one batch."""

    context: JourneyCustomer
    instances: dict[str, Instance] = field(default_factory=dict)  # running (and finished this batch)
    entered: dict[str, float] = field(default_factory=dict)
    automation: str = ""  # the console's switch: "paused" while an agent has the customer
    assignee: str = ""
    dirty: set[str] = field(default_factory=set)


class JourneyRunner:
    """The journeys participant: advances the journey instances of one shard's customers."""

    def __init__(self, keys: Keys, shard: int) -> None:
        self._keys = keys
        self._shard = shard
        self._journeys: dict[tuple[str, int], Journey | None] = {}  # versions never change: cache
        self._current: dict[str, int] = {}
        self._batch: dict[str, _Customer] = {}
        self._active: dict[str, dict[str, tuple[str, int]]] = {}
        self._with_events: set[str] = set()
        self._profile_writes = CustomerHashWrites()

    # --- before the transaction -----------------------------------------------------

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        """The running journeys of every customer (and, with an event, which journeys exist)."""
        self._batch, self._active = {}, {}
        self._profile_writes = ctx.customer_writes
        customers = ctx.home_customers()
        self._with_events = {
            item.customer_id for item in ctx.items if item.home and isinstance(item.entry, EventReceived)
        }
        for customer_id in customers:

            def keep_active(raw: dict[bytes, bytes], cid: str = customer_id) -> None:
                self._active[cid] = {iid.decode(): _name_version(v.decode()) for iid, v in raw.items()}

            reads.then(keep_active).hgetall(ctx.keys.journey_active(customer_id))
        if self._with_events:

            def keep_current(raw: dict[bytes, bytes]) -> None:
                self._current = {n.decode(): int(v) for n, v in raw.items()}

            reads.then(keep_current).hgetall(ctx.keys.journeys())

    def read_more(self, ctx: BatchContext, reads: ReadQueue) -> None:
        """Only for customers on a journey (or with an event): instances, entries, handoff state."""
        wanted = sorted(cid for cid, active in self._active.items() if active or cid in self._with_events)
        if not wanted:
            return
        needed = {pair for cid in wanted for pair in self._active[cid].values()}
        if self._with_events:
            needed |= set(self._current.items())
        for customer_id in wanted:
            state = _Customer(context=_context(ctx.facts(customer_id)))
            self._batch[customer_id] = state

            def keep_entered(raw: dict[bytes, bytes], state: _Customer = state) -> None:
                state.entered = {k.decode(): float(v) for k, v in raw.items()}

            def keep_switch(values: list[bytes | None], state: _Customer = state) -> None:
                automation, assignee = values
                state.automation = automation.decode() if automation else ""
                state.assignee = assignee.decode() if assignee else ""

            reads.then(keep_entered).hgetall(ctx.keys.journey_entered(customer_id))
            reads.then(keep_switch).hmget(
                ctx.keys.conversation(customer_id), [AUTOMATION_FIELD, ASSIGNEE_FIELD]
            )
            for instance_id in self._active[customer_id]:

                def keep_instance(
                    blob: bytes | None, state: _Customer = state, iid: str = instance_id
                ) -> None:
                    if blob:
                        state.instances[iid] = decode_instance(blob)

                reads.then(keep_instance).get(ctx.keys.journey_instance(instance_id))
        for name, version in sorted(pair for pair in needed if pair not in self._journeys):

            def keep_journey(blob: bytes | None, name: str = name, version: int = version) -> None:
                self._journeys[(name, version)] = _compile(name, version, blob)

            reads.then(keep_journey).hget(ctx.keys.journey_versions(name), str(version))

    # --- inside the transaction -----------------------------------------------------

    def apply(self, item: BatchItem, ctx: BatchContext, pipe: Pipeline) -> None:
        """Turn an applied ingest entry into stimuli for the customer's journeys."""
        state = self._batch.get(item.customer_id)
        if state is None:
            return
        entry, now, refused = _as_message(item.entry, ctx.records), ctx.now, item.refused
        if isinstance(entry, JourneyHandback):
            self._deliver(pipe, state, HandedBack(entry.at, entry.agent), now)
            return
        self._notice_handbacks(pipe, state, now)
        # This batch may have just linked the handle (a new customer): journeys can use it already.
        handle = entry.customer if isinstance(entry, EventReceived) else None
        if isinstance(entry, InboundMessage):
            handle = entry.sender
        if handle is not None and handle not in state.context.identifiers:
            state.context.identifiers.append(handle)
        if isinstance(entry, EventReceived):
            event = EventSnapshot(entry.name, entry.occurred_at, dict(entry.properties), entry.event_id)
            self._deliver(pipe, state, EventSeen(event), now)
            self._enter(pipe, state, event, now)
        elif isinstance(entry, InboundMessage):
            state.context.last_channel = entry.channel.value
            self._deliver(pipe, state, ReplySeen(entry.channel.value, entry.body, entry.received_at), now)
        elif isinstance(entry, StatusUpdate | SendOutcome):
            outcome = _OUTCOMES.get(entry.status)
            if outcome is not None:
                stimulus = StatusSeen(entry.message_id, outcome, entry.at, entry.error_code)
                self._deliver(pipe, state, stimulus, now, message_id=entry.message_id)
        elif isinstance(entry, Engagement):
            # An email open is its read receipt; a click on a tracked link is a click.
            outcome = "clicked" if entry.kind is EngagementKind.CLICKED else "read"
            stimulus = StatusSeen(entry.message_id, outcome, entry.at)
            self._deliver(pipe, state, stimulus, now, message_id=entry.message_id)
        elif isinstance(entry, OutboundRequest):
            if refused:
                stimulus = StatusSeen(
                    entry.message_id, "failed", now, "refused"
                )  # consent or WhatsApp window
                self._deliver(pipe, state, stimulus, now, message_id=entry.message_id)
        elif isinstance(entry, JourneyTimer):
            instance = state.instances.get(entry.instance_id)
            if instance is not None:
                self._advance(pipe, state, instance, TimerFired(entry.token), now)

    def flush(self, ctx: BatchContext, pipe: Pipeline) -> None:
        """Write every instance this batch changed; call once, before EXEC."""
        for customer_id, state in self._batch.items():
            for instance_id in sorted(state.dirty):
                instance = state.instances[instance_id]
                key = self._keys.journey_instance(instance_id)
                if instance.status.finished:
                    pipe.set(key, encode(instance), ex=FINISHED_TTL)
                    pipe.hdel(self._keys.journey_active(customer_id), instance_id)
                else:
                    pipe.set(key, encode(instance))
                    pipe.hset(
                        self._keys.journey_active(customer_id),
                        instance_id,
                        f"{instance.journey}:{instance.version}",
                    )
        self._batch = {}

    # --- helpers --------------------------------------------------------------------

    def _journey(self, name: str, version: int) -> Journey | None:
        return self._journeys.get((name, version))

    def _deliver(
        self, pipe: Pipeline, state: _Customer, stimulus: Stimulus, now: float, message_id: str = ""
    ) -> None:
        for instance in list(state.instances.values()):
            if instance.status.finished:
                continue
            if message_id and not any(s.message_id == message_id for s in instance.sends):
                continue
            self._advance(pipe, state, instance, stimulus, now)

    def _advance(
        self, pipe: Pipeline, state: _Customer, instance: Instance, stimulus: Stimulus, now: float
    ) -> None:
        journey = self._journey(instance.journey, instance.version)
        if journey is None:
            log.error(
                "journey %s v%s is not loadable; instance %s skipped",
                instance.journey,
                instance.version,
                instance.id,
            )
            return
        changed, effects = advance(instance, journey, stimulus, now, state.context)
        self._commit(pipe, state, instance, changed, effects, now)

    def _enter(self, pipe: Pipeline, state: _Customer, event: EventSnapshot, now: float) -> None:
        """Start every journey this event triggers and whose entry rule lets the customer in."""
        customer_id = state.context.id
        for name, version in sorted(self._current.items()):
            journey = self._journey(name, version)
            if journey is None or not triggers(journey, event, state.context):
                continue
            if not may_enter(journey, state.entered.get(name), now):
                continue
            rule = journey.definition.entry
            running = [i for i in state.instances.values() if i.journey == name and not i.status.finished]
            if running and not rule.concurrent:
                if rule.rule != "always":
                    continue  # already on it (once_per whose period passed mid-run)
                for old in running:
                    old_journey = self._journey(old.journey, old.version) or journey
                    changed, effects = stop(old, old_journey, now, "restarted", state.context)
                    self._commit(pipe, state, old, changed, effects, now)
            instance = new_instance(journey, "jin_" + ulid(now), customer_id, event, now)
            state.entered[name] = now
            pipe.hset(self._keys.journey_entered(customer_id), name, repr(now))
            stats = self._keys.journey_stats(name)
            pipe.hincrby(stats, "entered", 1)
            pipe.hincrby(stats, "active", 1)
            history = self._keys.journey_history(customer_id)
            pipe.zadd(history, {instance.id: now})
            pipe.zremrangebyrank(history, 0, -HISTORY_KEEP - 1)
            changed, effects = advance(instance, journey, Start(), now, state.context)
            self._commit(pipe, state, instance, changed, effects, now, new=True)

    def _notice_handbacks(self, pipe: Pipeline, state: _Customer, now: float) -> None:
        """A switch flipped back to active without a handback entry still resumes paused journeys."""
        if state.automation == PAUSED:
            return
        for instance in list(state.instances.values()):
            wait = instance.wait
            if wait is not None and wait.handoff:
                self._advance(pipe, state, instance, HandedBack(now, "console"), now)

    def _commit(
        self,
        pipe: Pipeline,
        state: _Customer,
        before: Instance,
        after: Instance,
        effects: list[Effect],
        now: float,
        new: bool = False,
    ) -> None:
        customer_id = state.context.id
        if new or after != before:
            state.instances[after.id] = after
            state.dirty.add(after.id)
        stats = self._keys.journey_stats(after.journey)
        for effect in effects:
            if isinstance(effect, SendJourneyMessage):
                request = OutboundRequest(
                    message_id=effect.message_id,
                    recipient=effect.recipient,
                    body=effect.body,
                    message_type=effect.message_type,
                    requested_at=now,
                    channel=effect.channel,
                    subject=effect.subject,
                    track=effect.track,
                )
                forwarded = Forwarded(customer_id=customer_id, entry=request)
                stream_entries.append(pipe, self._keys.ingest(self._shard), forwarded)
            elif isinstance(effect, ScheduleTimer):
                fire = JourneyTimer(customer_id, after.journey, after.id, effect.token)
                timers.schedule(
                    pipe, self._keys, self._shard, timer_id(after.id, effect.token), effect.due, fire
                )
            elif isinstance(effect, CancelTimer):
                timers.cancel(pipe, self._keys, self._shard, timer_id(after.id, effect.token))
            elif isinstance(effect, SetAttributes):
                encoded = {name: encode_attribute(value, now) for name, value in effect.values.items()}
                self._profile_writes.attributes(customer_id, encoded, now)
                state.context.attributes.update(effect.values)
            elif isinstance(effect, HandOff):
                state.automation = PAUSED
                pipe.hset(self._keys.conversation(customer_id), AUTOMATION_FIELD, PAUSED)
            elif isinstance(effect, HandBack):
                # Leave the switch alone while an agent holds the conversation or another
                # journey of the customer still waits for one.
                still = any(
                    i.id != after.id and i.wait is not None and i.wait.handoff
                    for i in state.instances.values()
                )
                if not still and not state.assignee and state.automation == PAUSED:
                    state.automation = ACTIVE
                    pipe.hset(self._keys.conversation(customer_id), AUTOMATION_FIELD, ACTIVE)
            elif isinstance(effect, Finish):
                pipe.hincrby(stats, effect.status.value, 1)
                pipe.hincrby(stats, "active", -1)
            elif isinstance(effect, Count):
                pipe.hincrby(stats, f"step:{effect.step}:{effect.metric}", 1)


def _name_version(value: str) -> tuple[str, int]:
    name, _, version = value.rpartition(":")
    return name, int(version)


def _compile(name: str, version: int, blob: bytes | None) -> Journey | None:
    if not blob:
        log.error("journey %s v%s is missing from Redis", name, version)
        return None
    try:
        return compile_stored(name, version, msgspec.json.decode(blob, type=StoredVersion))
    except (DefinitionError, ValueError) as exc:
        log.error("journey %s v%s does not load: %s", name, version, exc)
        return None


def _context(facts: CustomerFacts) -> JourneyCustomer:
    """The customer as journeys see them, from their profile hash."""
    return JourneyCustomer(
        facts.customer_id,
        attributes=dict(facts.attributes),
        identifiers=list(facts.identifiers),
        last_channel=facts.last_channel.value if facts.last_channel else "",
    )


def _as_message(entry: ShardEntry, records: dict[str, MessageRecord]) -> ShardEntry:
    """A provider report on a routing attempt, as a report on the message the attempt carries
    (what journeys know)."""
    if isinstance(entry, StatusUpdate | SendOutcome | Engagement):
        record = records.get(entry.message_id)
        if record is not None and record.parent_id:
            return msgspec.structs.replace(entry, message_id=record.parent_id)
    return entry
