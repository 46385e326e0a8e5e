"""Conversation state for the agent console: who holds a conversation, and the update feed.

A conversation is the console's view of one customer's thread. Its state (open / assigned /
resolved, the assignee, whether automation is paused, the unread count) is one Redis hash.
Every change, whether a shard applied a message or an agent claimed a conversation, appends a
``ConsoleEvent`` to one capped stream, which every gateway reads and fans out to its agents;
a reconnecting agent replays that stream from the last event id it saw.

State changes made by agents run as one Lua script each, so two agents racing for a claim
cannot both win. ``automation`` is shared with journeys (conversations/journeys/handoff.py):
``paused`` once an agent claims or a journey hands off, ``active`` again after a handback.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from conversations import stream_entries
from conversations.batch.context import BatchResult
from conversations.codec import decode_message, decode_thread_event, encode
from conversations.customer_hash import CustomerFacts, parse_customer_hash
from conversations.models import Channel, Direction, IdentifierKind, MessageLogged
from conversations.numerals import stream_id
from conversations.store import INGEST_FIELD, Keys

PREVIEW_CHARS = 140
PREVIEW_SCAN = 20  # thread entries read back to find the last message of a conversation


class ConversationStatus(enum.StrEnum):
    """Where a conversation stands for the agents."""

    OPEN = "open"  # nobody holds it (automation may be answering)
    ASSIGNED = "assigned"  # one agent holds it
    RESOLVED = "resolved"  # done; the customer's next message reopens it


class Automation(enum.StrEnum):
    """Whether journeys may act on the conversation."""

    ACTIVE = "active"
    PAUSED = "paused"


class UpdateReason(enum.StrEnum):
    """Why a ``conversation.updated`` was published."""

    INBOUND = "inbound"  # the customer wrote
    OUTBOUND = "outbound"  # a message to the customer was queued
    STATUS = "status"  # a message's delivery status changed
    CLAIMED = "claimed"
    RELEASED = "released"
    TRANSFERRED = "transferred"
    RESOLVED = "resolved"
    HANDBACK = "handback"  # returned to automation
    NOTE = "note"
    READ = "read"  # an agent read the unread messages


class Operation(enum.StrEnum):
    """An agent's change of a conversation's state."""

    CLAIM = "claim"
    RELEASE = "release"
    TRANSFER = "transfer"
    RESOLVE = "resolve"
    HANDBACK = "handback"


_REASON_OF = {
    Operation.CLAIM: UpdateReason.CLAIMED,
    Operation.RELEASE: UpdateReason.RELEASED,
    Operation.TRANSFER: UpdateReason.TRANSFERRED,
    Operation.RESOLVE: UpdateReason.RESOLVED,
    Operation.HANDBACK: UpdateReason.HANDBACK,
}


class ConsoleEvent(msgspec.Struct, frozen=True):
    """One entry of the console update stream."""

    customer_id: str
    reason: UpdateReason
    at: float
    agent: str = ""  # the agent who caused it, if any


class ConversationSummary(msgspec.Struct, kw_only=True):
    """A conversation as the queue list shows it."""

    customer_id: str
    name: str
    phone: str
    status: ConversationStatus
    assignee: str
    automation: Automation
    unread: int
    last_channel: Channel | None
    channels: list[Channel]
    last_at: float
    preview: str
    preview_direction: Direction | None


class TransitionRefused(Exception):
    """An agent's operation is not allowed in the conversation's current state."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# KEYS: conversation hash, customer hash, events stream, acting agent's assigned zset,
#       target agent's assigned zset.
# ARGV: op, agent, target, now, maxlen, customer id, encoded event.
# Returns {"ok", event id} or {error code, current assignee}.
_TRANSITION = """
local conv, cust, events, mine, theirs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op, agent, target, now, maxlen, cid, payload =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('EXISTS', cust) == 0 then return {'not_found', ''} end
local assignee = redis.call('HGET', conv, 'assignee') or ''
if assignee ~= '' and assignee ~= agent then return {'held', assignee} end
if op == 'claim' then
  redis.call('HSET', conv, 'assignee', agent, 'status', 'assigned', 'automation', 'paused')
  redis.call('ZADD', mine, now, cid)
elseif op == 'release' then
  if assignee ~= agent then return {'not_assigned', assignee} end
  redis.call('HSET', conv, 'assignee', '', 'status', 'open')
  redis.call('ZREM', mine, cid)
elseif op == 'transfer' then
  if assignee ~= agent then return {'not_assigned', assignee} end
  redis.call('HSET', conv, 'assignee', target, 'status', 'assigned')
  redis.call('ZREM', mine, cid)
  redis.call('ZADD', theirs, now, cid)
elseif op == 'resolve' then
  redis.call('HSET', conv, 'assignee', '', 'status', 'resolved')
  redis.call('ZREM', mine, cid)
elseif op == 'handback' then
  redis.call('HSET', conv, 'assignee', '', 'status', 'open', 'automation', 'active')
  redis.call('ZREM', mine, cid)
else
  return {'bad_op', ''}
end
redis.call('HSET', conv, 'updated_at', now)
local id = redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'd', payload)
return {'ok', id}
"""

# Run by the shard inside its batch transaction.
# KEYS: events stream, recent zset, then one conversation hash per customer.
# ARGV: maxlen, then per customer: customer id, inbound count, new message (0/1), at, event.
_BATCH = """
local events, recent, maxlen = KEYS[1], KEYS[2], ARGV[1]
for i = 3, #KEYS do
  local base = 2 + (i - 3) * 5
  local cid, inbound, fresh, at, payload =
    ARGV[base], tonumber(ARGV[base + 1]), ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  if inbound > 0 then
    redis.call('HINCRBY', KEYS[i], 'unread', inbound)
    if redis.call('HGET', KEYS[i], 'status') == 'resolved' then
      redis.call('HSET', KEYS[i], 'status', 'open')
    end
  end
  if fresh == '1' then redis.call('ZADD', recent, at, cid) end
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'd', payload)
end
return #KEYS - 2
"""

# KEYS: conversation hash, events stream. ARGV: maxlen, encoded event.
# Clears the unread count and publishes "read", only when there was something unread.
_MARK_READ = """
local unread = tonumber(redis.call('HGET', KEYS[1], 'unread') or '0')
if unread == 0 then return 0 end
redis.call('HSET', KEYS[1], 'unread', 0)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'd', ARGV[2])
return unread
"""

_decode_event = msgspec.msgpack.Decoder(ConsoleEvent).decode


def decode_event(payload: bytes) -> ConsoleEvent:
    return _decode_event(payload)


def parse_event_id(event_id: str) -> tuple[int, int] | None:
    """A stream id ``<ms>-<seq>`` as a comparable pair, or None when malformed."""
    return stream_id(event_id)


class ConsoleBatchHook:
    """Publishes a shard batch's conversation updates inside the batch's own transaction."""

    def __init__(self, keys: Keys, maxlen: int) -> None:
        self._keys = keys
        self._maxlen = maxlen

    def __call__(self, pipe, result: BatchResult, now: float) -> None:
        customers = sorted(result.touched_customers)
        keys = [self._keys.console_events(), self._keys.console_recent()]
        args: list[str | int | float | bytes] = [self._maxlen]
        for customer_id in customers:
            inbound = result.inbound.get(customer_id, 0)
            agent = ""
            if inbound:
                reason = UpdateReason.INBOUND
            elif customer_id in result.outbound:
                reason = UpdateReason.OUTBOUND
            elif customer_id in result.notes:
                reason, agent = UpdateReason.NOTE, result.notes[customer_id]
            else:
                reason = UpdateReason.STATUS
            keys.append(self._keys.conversation(customer_id))
            fresh = "1" if reason in (UpdateReason.INBOUND, UpdateReason.OUTBOUND) else "0"
            event = encode(ConsoleEvent(customer_id, reason, now, agent))
            args += [customer_id, inbound, fresh, repr(now), event]
        pipe.eval(_BATCH, len(keys), *keys, *args)


class ConsoleStore:
    """Reads and changes conversation state for the console (used by the gateway)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        maxlen: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._maxlen = maxlen
        self._clock = clock
        self._transition = redis.register_script(_TRANSITION)
        self._mark_read = redis.register_script(_MARK_READ)

    async def customer_exists(self, customer_id: str) -> bool:
        return bool(await self._redis.exists(self._keys.customer(customer_id)))

    async def customer_fields(self, customer_id: str) -> dict[str, str]:
        """The customer's profile hash, decoded (empty when there is no such customer)."""
        return _decoded(await self._redis.hgetall(self._keys.customer(customer_id)))

    async def apply(self, op: Operation, customer_id: str, agent: str, target: str = "") -> str:
        """Change the conversation's state; returns the update's event id or raises TransitionRefused."""
        now = self._clock()
        event = ConsoleEvent(customer_id, _REASON_OF[op], now, agent)
        keys = [
            self._keys.conversation(customer_id),
            self._keys.customer(customer_id),
            self._keys.console_events(),
            self._keys.console_assigned(agent),
            self._keys.console_assigned(target or agent),
        ]
        args = [op.value, agent, target, repr(now), self._maxlen, customer_id, encode(event)]
        code, detail = await self._transition(keys=keys, args=args)
        code, detail = code.decode(), detail.decode()
        if code == "ok":
            return detail
        if code == "not_found":
            raise TransitionRefused("not_found", f"no customer {customer_id}")
        if code == "held":
            if op is Operation.CLAIM:
                raise TransitionRefused("already_claimed", f"already claimed by {detail}")
            raise TransitionRefused("assigned_to_other", f"assigned to {detail}; only they can do this")
        if code == "not_assigned":
            raise TransitionRefused("not_assigned", f"you do not hold this conversation; {op} needs a claim")
        raise TransitionRefused("invalid_operation", f"unknown operation {op}")

    async def assignee(self, customer_id: str) -> str:
        """Who holds the conversation ("" when nobody does)."""
        found = await self._redis.hget(self._keys.conversation(customer_id), "assignee")
        return found.decode() if found else ""

    async def tail_cursor(self, customer_id: str, limit: int) -> str | None:
        """A thread cursor after which exactly the last ``limit`` entries follow (None: fewer exist)."""
        newest = await self._redis.xrevrange(self._keys.thread(customer_id), count=limit + 1)
        return newest[-1][0].decode() if len(newest) > limit else None

    async def record_reply_author(self, customer_id: str, message_id: str, agent: str) -> None:
        """Remember which agent sent an outbound message (shown on the thread)."""
        await self._redis.hset(self._keys.reply_authors(customer_id), message_id, agent)

    async def reply_authors(self, customer_id: str, message_ids: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(message_ids))
        if not wanted:
            return {}
        found = await self._redis.hmget(self._keys.reply_authors(customer_id), wanted)
        return {mid: name.decode() for mid, name in zip(wanted, found, strict=True) if name}

    async def mark_read(self, customer_id: str, agent: str) -> None:
        """Clear the unread count (publishing ``read`` only if there was something unread)."""
        event = ConsoleEvent(customer_id, UpdateReason.READ, self._clock(), agent)
        await self._mark_read(
            keys=[self._keys.conversation(customer_id), self._keys.console_events()],
            args=[self._maxlen, encode(event)],
        )

    def _publish(self, pipe, event: ConsoleEvent) -> None:
        stream_entries.append(pipe, self._keys.console_events(), event, maxlen=self._maxlen)

    # --- the update feed -----------------------------------------------------------------

    async def last_event_id(self) -> str:
        """The newest event id, or ``0-0`` when the stream is empty."""
        newest = await self._redis.xrevrange(self._keys.console_events(), count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def events_after(self, after: str, count: int) -> list[tuple[str, ConsoleEvent]]:
        """Up to ``count`` events strictly after ``after``, oldest first."""
        raw = await self._redis.xrange(self._keys.console_events(), min=f"({after}", count=count)
        return [(sid.decode(), decode_event(fields[INGEST_FIELD])) for sid, fields in raw]

    async def can_resume_after(self, event_id: str) -> bool:
        """Whether every event after ``event_id`` is still in the stream (a replay has no gap).

        Trimming removes the oldest events first, so while the event itself is still there,
        everything after it is too. ``0-0`` (a snapshot of an empty stream) resumes only if
        nothing was ever removed.
        """
        stream = self._keys.console_events()
        if event_id == "0-0":
            try:
                info = await self._redis.xinfo_stream(stream)
            except ResponseError:  # no stream yet: nothing was ever removed
                return True
            return info.get("entries-added") == info.get("length")
        return bool(await self._redis.xrange(stream, min=event_id, max=event_id, count=1))

    # --- queue lists and summaries ---------------------------------------------------------

    async def recent_ids(self, limit: int) -> list[str]:
        """The conversations with the latest messages, newest first."""
        raw = await self._redis.zrevrange(self._keys.console_recent(), 0, limit - 1)
        return [cid.decode() for cid in raw]

    async def assigned_ids(self, agent: str, limit: int) -> list[str]:
        raw = await self._redis.zrevrange(self._keys.console_assigned(agent), 0, limit - 1)
        return [cid.decode() for cid in raw]

    async def summaries(self, customer_ids: Iterable[str]) -> dict[str, ConversationSummary]:
        """Current summaries of the given conversations (unknown customers are left out)."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for customer_id in ids:
            pipe.hgetall(self._keys.conversation(customer_id))
            pipe.hgetall(self._keys.customer(customer_id))
            pipe.xrevrange(self._keys.thread(customer_id), count=PREVIEW_SCAN)
        replies = await pipe.execute()
        last_messages: dict[str, MessageLogged] = {}
        for index, customer_id in enumerate(ids):
            for _, fields in replies[index * 3 + 2]:
                event = decode_thread_event(fields[INGEST_FIELD])
                if isinstance(event, MessageLogged):
                    last_messages[customer_id] = event
                    break
        records = {}
        if last_messages:
            wanted = [event.message_id for event in last_messages.values()]
            blobs = await self._redis.mget([self._keys.message(mid) for mid in wanted])
            records = {mid: decode_message(blob) for mid, blob in zip(wanted, blobs, strict=True) if blob}
        found = {}
        for index, customer_id in enumerate(ids):
            conv = _decoded(replies[index * 3])
            if not replies[index * 3 + 1]:
                continue
            customer = parse_customer_hash(customer_id, replies[index * 3 + 1])
            last = last_messages.get(customer_id)
            record = records.get(last.message_id) if last else None
            found[customer_id] = summarize(customer_id, conv, customer, last, record.body if record else "")
        return found


def _decoded(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode(errors="replace") for k, v in raw.items()}


def summarize(
    customer_id: str,
    conv: dict[str, str],
    customer: CustomerFacts,
    last: MessageLogged | None,
    body: str,
) -> ConversationSummary:
    """Build a summary from the conversation hash, the customer hash and the last message."""
    phones = sorted(i.value for i in customer.identifiers if i.kind is IdentifierKind.PHONE)
    phone = phones[0] if phones else ""
    channels = set(customer.last_inbound_at)
    last_channel = customer.last_channel
    if last_channel is not None:
        channels.add(last_channel)
    if last is not None:
        channels.add(last.channel)
    preview = " ".join(body.split())
    if len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 1] + "…"
    return ConversationSummary(
        customer_id=customer_id,
        name=customer.profile_name or phone or customer_id,
        phone=phone,
        status=ConversationStatus(conv.get("status") or ConversationStatus.OPEN),
        assignee=conv.get("assignee", ""),
        automation=Automation(conv.get("automation") or Automation.ACTIVE),
        unread=int(conv.get("unread") or 0),
        last_channel=last_channel or (last.channel if last else None),
        channels=sorted(channels),
        last_at=last.at if last else (customer.updated_at or customer.created_at or 0.0),
        preview=preview,
        preview_direction=last.direction if last else None,
    )
