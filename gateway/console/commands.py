"""What each client frame does: subscriptions, threads, claims, replies and notes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from redis.exceptions import RedisError

from conversations.agents import AgentDirectory
from conversations.codec import encode
from conversations.console import (
    ConsoleStore,
    ConversationSummary,
    Operation,
    TransitionRefused,
    parse_event_id,
)
from conversations.ids import new_message_id, ulid
from conversations.journeys.handoff import handback_entry
from conversations.models import (
    AgentNote,
    Channel,
    Direction,
    Forwarded,
    Identifier,
    IdentifierKind,
    OutboundRequest,
)
from conversations.sharding import shard_for_customer
from conversations.slots import SlotMap
from conversations.thread import ThreadReader, is_valid_cursor
from gateway.console.frames import (
    Ack,
    Auth,
    Claim,
    ClientFrame,
    ConversationUpdated,
    Handback,
    Note,
    Open,
    Queue,
    QueueSnapshot,
    Release,
    Reply,
    Resolve,
    Subscribe,
    ThreadFrame,
    Transfer,
    Typing,
    decode_client_frame,
    encode_frame,
)
from gateway.console.hub import ConsoleHub
from gateway.console.session import ConsoleSocket
from gateway.ingest_writer import IngestWriter

log = logging.getLogger(__name__)

SNAPSHOT_LIMIT = 200  # conversations in a queue snapshot
THREAD_PAGE = 200  # entries in an ``open`` answer
REPLAY_PAGE = 100  # updates replayed per subscribe (at most half the socket's queue)

# Which identifier kind carries a message on each channel.
_ADDRESS_KIND = {
    Channel.SMS: IdentifierKind.PHONE,
    Channel.VOICE: IdentifierKind.PHONE,
    Channel.WHATSAPP: IdentifierKind.PHONE,
    Channel.RCS: IdentifierKind.PHONE,
    Channel.EMAIL: IdentifierKind.EMAIL,
}


class CommandError(Exception):
    """A request that cannot be carried out; answered with an error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _PageEnd:
    """Where a replay page ended, and whether more updates follow it."""

    event_id: str
    more: bool


class _RefOnly(msgspec.Struct):
    ref: str = ""


@dataclass(slots=True)
class ConsoleCommands:
    """Carries out client frames for authenticated sockets."""

    store: ConsoleStore
    agents: AgentDirectory
    hub: ConsoleHub
    reader: ThreadReader
    ingest: IngestWriter
    slot_map: SlotMap
    channels: frozenset[Channel]
    clock: Callable[[], float]

    async def handle_text(self, sock: ConsoleSocket, text: str) -> None:
        """Decode and carry out one frame; anything wrong becomes an error frame."""
        try:
            frame = decode_client_frame(text)
        except msgspec.ValidationError as exc:
            sock.error("invalid_frame", str(exc), _ref_of(text))
            return
        except msgspec.DecodeError as exc:
            sock.error("invalid_json", f"frame is not valid JSON: {exc}")
            return
        try:
            await self.dispatch(sock, frame)
        except (CommandError, TransitionRefused) as exc:
            sock.error(exc.code, exc.message, frame.ref)
        except RedisError as exc:
            log.warning("console: storage error on %s: %s", type(frame).__name__, exc)
            sock.error("storage_unavailable", "the message store is unreachable; retry", frame.ref)
        except Exception:
            log.exception("console: %s failed", type(frame).__name__)
            sock.error("internal_error", "internal error; the request was not carried out", frame.ref)

    async def dispatch(self, sock: ConsoleSocket, frame: ClientFrame) -> None:
        if isinstance(frame, Auth):
            raise CommandError("already_authenticated", "this socket is already authenticated")
        if isinstance(frame, Subscribe):
            await self.subscribe(sock, frame)
        elif isinstance(frame, Open):
            await self.open(sock, frame)
        elif isinstance(frame, Reply):
            await self.reply(sock, frame)
        elif isinstance(frame, Note):
            await self._require_customer(frame.customer_id)
            note_id = await self._add_note(frame.customer_id, sock.agent, frame.text)
            sock.send(Ack("note", frame.ref, frame.customer_id, message_id=note_id))
        elif isinstance(frame, Typing):
            await self.hub.publish_typing(frame.customer_id, sock.agent)
        elif isinstance(frame, Transfer):
            if frame.to_agent == sock.agent:
                raise CommandError("invalid_transfer", "the conversation is already yours")
            if not await self.agents.exists(frame.to_agent):
                raise CommandError("unknown_agent", f"no agent named {frame.to_agent}")
            await self._apply(sock, Operation.TRANSFER, frame.customer_id, frame.ref, frame.to_agent)
        else:
            op = {
                Claim: Operation.CLAIM,
                Release: Operation.RELEASE,
                Resolve: Operation.RESOLVE,
                Handback: Operation.HANDBACK,
            }[type(frame)]
            await self._apply(sock, op, frame.customer_id, frame.ref)

    async def _apply(
        self, sock: ConsoleSocket, op: Operation, customer_id: str, ref: str, target: str = ""
    ) -> None:
        event_id = await self.store.apply(op, customer_id, sock.agent, target)
        home = shard_for_customer(customer_id, self.slot_map)
        if op is Operation.HANDBACK and home is not None:
            # Wake the home shard: journeys paused at a handoff step resume in its next batch.
            await self.ingest.submit(home, encode(handback_entry(customer_id, self.clock(), sock.agent)))
        sock.send(Ack(op.value, ref, customer_id, event_id=event_id))

    async def _add_note(self, customer_id: str, agent: str, body: str) -> str:
        """Hand the note to the customer's home shard (the thread's one writer); durable on return."""
        now = self.clock()
        note = AgentNote(customer_id, "note_" + ulid(now), agent, body, now)
        home = shard_for_customer(customer_id, self.slot_map) or 0
        await self.ingest.submit(home, encode(note))
        return note.note_id

    async def _require_customer(self, customer_id: str) -> None:
        if not await self.store.customer_exists(customer_id):
            raise CommandError("not_found", f"no customer {customer_id}")

    # --- subscriptions ------------------------------------------------------------------------

    async def subscribe(self, sock: ConsoleSocket, frame: Subscribe) -> None:
        """Snapshot (or replay since ``resume_from``), then live updates, with no gap between."""
        if frame.resume_from is not None and parse_event_id(frame.resume_from) is None:
            raise CommandError("invalid_frame", "resume_from must be an event id like 1700000000000-0")
        sock.start_subscription(frame.queues, frame.resume_from)
        try:
            page_end = None
            if frame.resume_from is not None:
                page_end = await self._replay_page(sock, frame.resume_from)
            if page_end is None:
                await self._snapshot(sock, frame.queues, resync=frame.resume_from is not None)
                sock.send(Ack("subscribe", frame.ref))
            elif page_end.more:
                sock.page_ended(page_end.event_id)
                sock.send(Ack("subscribe", frame.ref, event_id=page_end.event_id, more=True))
            else:
                sock.send(Ack("subscribe", frame.ref))
        finally:
            sock.end_subscription_setup()

    async def _snapshot(self, sock: ConsoleSocket, queues: list[Queue], resync: bool) -> None:
        # The position is read first: updates after it are delivered even if the snapshot
        # already shows them (updates carry whole summaries, so a repeat is harmless).
        position = await self.store.last_event_id()
        ids = await self.store.recent_ids(SNAPSHOT_LIMIT)
        ids += await self.store.assigned_ids(sock.agent, SNAPSHOT_LIMIT)
        summaries = await self.store.summaries(ids)
        chosen = sorted(
            (summary for summary in summaries.values() if sock.wants(summary)),
            key=lambda summary: summary.last_at,
            reverse=True,
        )
        sock.show(chosen)
        sock.set_position(position)
        sock.send(QueueSnapshot(sorted(set(queues)), chosen, position, resync))

    async def _replay_page(self, sock: ConsoleSocket, resume_from: str) -> _PageEnd | None:
        """Send one page of the updates after ``resume_from``; None when some were trimmed.

        A page is at most half the socket's queue, so replaying never overflows it; the client
        asks for each next page once it has this one (``ack`` with ``more``).
        """
        if not await self.store.can_resume_after(resume_from):
            return None
        sock.set_position(resume_from)
        size = max(1, min(REPLAY_PAGE, sock.limit // 2))
        events = await self.store.events_after(resume_from, size + 1)
        page = events[:size]
        summaries = await self.store.summaries(event.customer_id for _, event in page)
        for event_id, event in page:
            summary = summaries.get(event.customer_id)
            if summary is not None:
                update = ConversationUpdated(event_id, event.reason, summary, event.agent)
                # Unfiltered: the client knows which conversations it shows, the server does not.
                sock.deliver(event_id, summary, encode_frame(update), replay=True)
        return _PageEnd(page[-1][0] if page else resume_from, more=len(events) > size)

    # --- threads ------------------------------------------------------------------------------

    async def open(self, sock: ConsoleSocket, frame: Open) -> None:
        if frame.cursor is not None and not is_valid_cursor(frame.cursor):
            raise CommandError("invalid_frame", "cursor must be a thread entry's cursor")
        await self._require_customer(frame.customer_id)
        await self.store.mark_read(frame.customer_id, sock.agent)
        cursor = frame.cursor
        truncated = False
        if cursor is None:
            cursor = await self.store.tail_cursor(frame.customer_id, THREAD_PAGE)
            truncated = cursor is not None
        page = await self.reader.page(frame.customer_id, cursor, THREAD_PAGE)
        outbound = [
            entry.message_id
            for entry in page.entries
            if entry.kind == "message" and entry.direction is Direction.OUTBOUND
        ]
        authors = await self.store.reply_authors(frame.customer_id, outbound)
        for entry in page.entries:
            if entry.kind == "message" and entry.message_id in authors:
                entry.agent = authors[entry.message_id]
        summary = await self._summary(frame.customer_id)
        sock.send(
            ThreadFrame(frame.customer_id, page.entries, summary, page.next_cursor, truncated, frame.ref)
        )

    async def _summary(self, customer_id: str) -> ConversationSummary:
        summary = (await self.store.summaries([customer_id])).get(customer_id)
        if summary is None:
            raise CommandError("not_found", f"no customer {customer_id}")
        return summary

    # --- replies ------------------------------------------------------------------------------

    async def reply(self, sock: ConsoleSocket, frame: Reply) -> None:
        """Send a message through the customer's shard, as ``POST /v1/messages`` does."""
        customer = await self.store.customer_fields(frame.customer_id)
        shard = shard_for_customer(frame.customer_id, self.slot_map)
        if not customer or shard is None:
            raise CommandError("not_found", f"no customer {frame.customer_id}")
        channel = frame.channel or Channel(customer.get("last_channel") or Channel.SMS)
        if channel not in self.channels:
            enabled = ", ".join(sorted(self.channels))
            raise CommandError(
                "channel_unavailable", f"channel {channel} is not enabled (enabled: {enabled})"
            )
        recipient = _address(customer, channel)
        if recipient is None:
            raise CommandError("no_address", f"the customer has no address for {channel}")
        # Replying takes the conversation: an agent answering pauses automation, and two
        # agents never answer the same customer at once.
        holder = await self.store.assignee(frame.customer_id)
        if holder and holder != sock.agent:
            raise CommandError("assigned_to_other", f"assigned to {holder}; claim it first")
        if not holder:
            await self.store.apply(Operation.CLAIM, frame.customer_id, sock.agent)
        message_id = new_message_id()
        await self.store.record_reply_author(frame.customer_id, message_id, sock.agent)
        entry = OutboundRequest(
            message_id=message_id,
            recipient=recipient,
            body=frame.text,
            message_type="service",
            requested_at=self.clock(),
            channel=channel,
        )
        # The customer id is known, so the entry goes straight to the home shard.
        dedupe = f"console:reply:{sock.agent}:{frame.ref}" if frame.ref else None
        fresh = await self.ingest.submit(shard, encode(Forwarded(frame.customer_id, entry)), dedupe)
        sock.send(
            Ack(
                "reply",
                frame.ref,
                frame.customer_id,
                message_id=message_id if fresh else "",
                duplicate=not fresh,
            )
        )


def _address(customer: dict[str, str], channel: Channel) -> Identifier | None:
    kind = _ADDRESS_KIND[channel]
    prefix = f"ident:{kind.value}:"
    values = sorted(name[len(prefix) :] for name in customer if name.startswith(prefix))
    return Identifier(kind, values[0]) if values else None


def _ref_of(text: str) -> str:
    """The ``ref`` of a frame that failed validation, when one can still be read."""
    try:
        return msgspec.json.decode(text, type=_RefOnly).ref
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ""
