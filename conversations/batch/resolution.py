"""Identity resolution, the batch's first read: whose entry is each item, and which message.

One pipelined round trip in the common case: find-or-create the customer of every entry that
names only an identifier (``SET NX GET``, atomic, so two shards never create two customers for
one number), map provider message ids to ours, read the message records the entries name, and
see whether any named customer was merged away. A status that only carried a provider id, or a
customer merged away, costs one more small read.
"""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis

from conversations.batch.context import BatchContext, BatchItem
from conversations.codec import decode_message
from conversations.ids import new_customer_id
from conversations.models import (
    ConsentRequest,
    Engagement,
    EventReceived,
    Identifier,
    InboundMessage,
    OutboundRequest,
    RoutingTimer,
    SendOutcome,
    ShardEntry,
    StatusUpdate,
)
from conversations.redirects import follow
from conversations.sharding import shard_for_customer
from conversations.slots import slot_for_identifier

Reported = StatusUpdate | SendOutcome | Engagement | RoutingTimer  # entries naming one of our messages


def identifier_of(entry: ShardEntry) -> Identifier | None:
    """The identifier an entry that does not name its customer reaches them by."""
    if isinstance(entry, InboundMessage):
        return entry.sender
    if isinstance(entry, OutboundRequest):
        return entry.recipient
    if isinstance(entry, EventReceived | ConsentRequest):
        return entry.customer
    return None


async def resolve(redis: Redis, ctx: BatchContext) -> None:
    """Fill in each item's customer (and home) and ``ctx.records`` for the messages named."""
    keys = ctx.keys
    wanted: dict[Identifier, str] = {}
    for item in ctx.items:
        identifier = identifier_of(item.entry) if not item.customer_id else None
        if identifier is not None and identifier not in wanted:
            # A new customer's home is the identifier's slot: the one that brought it here.
            wanted[identifier] = new_customer_id(slot_for_identifier(identifier, ctx.slot_map.slots))
    by_provider = [
        item for item in ctx.items if isinstance(item.entry, StatusUpdate) and not item.entry.message_id
    ]
    message_ids = _named_messages(ctx.items)
    named = sorted({item.customer_id for item in ctx.items if item.customer_id})

    pipe = redis.pipeline(transaction=False)
    for identifier, candidate in wanted.items():
        pipe.set(keys.identity(identifier), candidate, nx=True, get=True)
    for item in by_provider:
        status: Any = item.entry
        pipe.get(keys.provider_message(status.provider, status.provider_message_id))
    if message_ids:
        pipe.mget([keys.message(mid) for mid in message_ids])
    if named:
        pipe.mget([keys.redirect(cid) for cid in named])
    replies = iter(await pipe.execute() if len(pipe) else [])

    resolved = {
        identifier: (found.decode() if found else candidate)
        for (identifier, candidate), found in zip(wanted.items(), replies, strict=False)
    }
    late: list[str] = []
    for item in by_provider:
        found = next(replies)
        if found:
            item.entry = msgspec.structs.replace(item.entry, message_id=found.decode())
            late.append(found.decode())
    if message_ids:
        _keep_records(ctx, message_ids, next(replies))
    redirected = False
    if named:
        redirected = any(next(replies))
    late = sorted(set(late) - ctx.records.keys())
    if late:
        _keep_records(ctx, late, await redis.mget([keys.message(mid) for mid in late]))

    for item in ctx.items:
        if not item.customer_id:
            identifier = identifier_of(item.entry)
            if identifier is not None:
                item.customer_id = resolved[identifier]
        entry = item.entry
        # The message record names its customer (authoritative after a merge).
        if isinstance(entry, StatusUpdate | SendOutcome) and entry.message_id in ctx.records:
            _assign(item, ctx.records[entry.message_id].customer_id)
    if redirected or late:
        moved = await follow(redis, keys, {item.customer_id for item in ctx.items})
        for item in ctx.items:
            if item.customer_id and moved.get(item.customer_id, item.customer_id) != item.customer_id:
                _assign(item, moved[item.customer_id])
    for item in ctx.items:
        home = shard_for_customer(item.customer_id, ctx.slot_map)
        item.home = home is None or home == ctx.shard


def _assign(item: BatchItem, customer_id: str) -> None:
    item.customer_id = customer_id
    if isinstance(item.entry, StatusUpdate | SendOutcome):
        item.entry = msgspec.structs.replace(item.entry, customer_id=customer_id)


def _named_messages(items: list[BatchItem]) -> list[str]:
    return sorted(
        {
            item.entry.message_id
            for item in items
            if isinstance(item.entry, Reported) and item.entry.message_id
        }
    )


def _keep_records(ctx: BatchContext, message_ids: list[str], blobs: list[bytes | None]) -> None:
    for mid, blob in zip(message_ids, blobs, strict=True):
        if blob:
            ctx.records[mid] = decode_message(blob)
