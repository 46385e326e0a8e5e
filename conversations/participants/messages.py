"""Message records in a batch: inbound messages, provider statuses, send outcomes, opens/clicks.

The one writer of message records (``Keys.message``) and provider-id links: every record any
participant changed or created is stored once, at flush.
"""

from __future__ import annotations

import logging

import msgspec
from redis.asyncio.client import Pipeline

from conversations import timers
from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.codec import decode_message, encode
from conversations.ids import new_message_id
from conversations.models import (
    Channel,
    Direction,
    Engagement,
    EngagementKind,
    EngagementLogged,
    InboundMessage,
    MessageLogged,
    MessageRecord,
    MessageStatus,
    SendOutcome,
    StatusChange,
    StatusLogged,
    StatusUpdate,
)
from conversations.status import advances

log = logging.getLogger(__name__)

PROVIDER_ID_TTL = 90 * 24 * 3600
# Channels whose sender names themselves (an email's display name): such a name never replaces one.
TYPED_NAME_CHANNELS = frozenset({Channel.EMAIL})
MAX_STATUS_PARKING = 8  # ~1 minute of retries for a status that arrives before its send outcome


class MessageRecords:
    """Records what happened to each message; sets ``item.record``/``item.change`` for later participants."""

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        """The messages the batch's records were sent for (an attempt's parent message)."""
        parents = sorted({r.parent_id for r in ctx.records.values() if r.parent_id} - ctx.records.keys())
        if not parents:
            return

        def keep(blobs: list[bytes | None]) -> None:
            for message_id, blob in zip(parents, blobs, strict=True):
                if blob and message_id not in ctx.records:
                    ctx.records[message_id] = decode_message(blob)

        reads.then(keep).mget([ctx.keys.message(mid) for mid in parents])

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = item.entry
        if isinstance(entry, InboundMessage):
            self._inbound(item, entry, ctx, tx)
        elif isinstance(entry, StatusUpdate):
            record = ctx.records.get(entry.message_id)
            if record is None:
                _park(ctx, tx, entry)
                item.held = True
                return
            if not record.provider_message_id:
                record.provider = entry.provider
                record.provider_message_id = entry.provider_message_id
            if entry.error_message:
                record.error_message = entry.error_message
            change = StatusChange(entry.status, entry.at, entry.provider_status, entry.error_code)
            self._changed(item, ctx, record, change)
        elif isinstance(entry, SendOutcome):
            self._outcome(item, entry, ctx, tx)
        elif isinstance(entry, Engagement):
            self._engagement(entry, ctx)

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        for record in ctx.take_dirty_records():
            tx.set(ctx.keys.message(record.id), encode(record))

    def _inbound(self, item: BatchItem, entry: InboundMessage, ctx: BatchContext, tx: Pipeline) -> None:
        record = MessageRecord(
            id=new_message_id(),
            customer_id=item.customer_id,
            channel=entry.channel,
            direction=Direction.INBOUND,
            body=entry.body,
            status=MessageStatus.RECEIVED,
            created_at=entry.received_at,
            updated_at=ctx.now,
            provider=entry.provider,
            provider_message_id=entry.provider_message_id,
            address=entry.sender.value,
            media=entry.media,
            attributes={**entry.attributes, **({"verification": "unverified"} if entry.unverified else {})},
            location=entry.location,
            reply_payload=entry.reply_payload,
            subject=entry.subject,
            html=entry.html,
        )
        ctx.save(record)
        tx.set(
            ctx.keys.provider_message(entry.provider, entry.provider_message_id),
            record.id,
            ex=PROVIDER_ID_TTL,
        )
        logged = MessageLogged(
            record.id, entry.channel, Direction.INBOUND, entry.received_at, item.session_id
        )
        ctx.log(item.customer_id, logged)
        ctx.customer_writes.touch(item.customer_id, ctx.now, entry.sender)
        ctx.customer_writes.inbound(
            item.customer_id,
            entry.channel,
            entry.received_at,
            "" if entry.unverified else entry.profile_name,
            # An email's display name is whatever the sender typed: it may name a nameless
            # customer, never rename one.
            replace_name=entry.channel not in TYPED_NAME_CHANNELS,
        )
        facts = ctx.facts(item.customer_id)
        last = facts.last_inbound_at.get(entry.channel, entry.received_at)
        facts.last_inbound_at[entry.channel] = max(last, entry.received_at)
        facts.last_channel = entry.channel
        if entry.sender not in facts.identifiers:
            facts.identifiers.append(entry.sender)
        ctx.result.inbound[item.customer_id] = ctx.result.inbound.get(item.customer_id, 0) + 1

    def _outcome(self, item: BatchItem, entry: SendOutcome, ctx: BatchContext, tx: Pipeline) -> None:
        record = ctx.records.get(entry.message_id)
        if record is None:
            log.warning("send outcome for unknown message %s", entry.message_id)
            return
        record.provider = entry.provider
        if entry.provider_message_id:
            record.provider_message_id = entry.provider_message_id
            tx.set(
                ctx.keys.provider_message(entry.provider, entry.provider_message_id),
                record.id,
                ex=PROVIDER_ID_TTL,
            )
        if entry.segments:
            record.segments = entry.segments
        if entry.price is not None:
            record.price = entry.price
        if entry.error_message:
            record.error_message = entry.error_message
        self._changed(item, ctx, record, StatusChange(entry.status, entry.at, "", entry.error_code))

    @staticmethod
    def _changed(item: BatchItem, ctx: BatchContext, record: MessageRecord, change: StatusChange) -> None:
        record.history.append(change)
        record.updated_at = max(record.updated_at, change.at)
        if advances(record.status, change.status):
            record.status = change.status
            if change.error_code:
                record.error_code = change.error_code
        logged = StatusLogged(
            record.parent_id or record.id, record.channel, change.status, change.at, change.error_code
        )
        ctx.log(record.customer_id, logged)
        ctx.save(record)
        item.record, item.change = record, change

    @staticmethod
    def _engagement(entry: Engagement, ctx: BatchContext) -> None:
        record = ctx.records.get(entry.message_id)
        if record is None or record.customer_id != entry.customer_id:
            log.warning("engagement for unknown message %s", entry.message_id)
            return
        # The attempt that carried the link, and the message it carried, both count it.
        parent = ctx.records.get(record.parent_id) if record.parent_id else None
        for target in (record, parent):
            if target is None:
                continue
            if target.opened_at is None:  # a click proves the message was opened too
                target.opened_at = entry.at
            if entry.kind is EngagementKind.CLICKED:
                target.clicks += 1
            ctx.save(target)
        logged = EngagementLogged(
            record.parent_id or record.id, record.channel, entry.kind, entry.at, entry.url
        )
        ctx.log(record.customer_id, logged)


def _park(ctx: BatchContext, tx: Pipeline, entry: StatusUpdate) -> None:
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
    timers.schedule(tx, ctx.keys, ctx.shard, timer_id, ctx.now + delay, retry)
