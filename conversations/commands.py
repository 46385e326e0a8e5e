"""Direct commands a shard actor runs for the API (upsert a profile, set preferences).

Requests and replies cross the Ray boundary as msgpack bytes of these structs. Each runs under
the shard's lock, so it never interleaves with a batch touching the same customers.
"""

from __future__ import annotations

import copy

import msgspec
from redis.asyncio import Redis

from conversations.codec import decode_preferences
from conversations.consent import write_preferences
from conversations.merge import MergeResult
from conversations.models import Identifier, IdentifierKind
from conversations.preferences import (
    ConsentChange,
    ConsentState,
    Preferences,
    TypePreference,
)
from conversations.profiles import IdentifierConflict, Scalar, owners_of, upsert_profile
from conversations.sharding import shard_for_customer
from conversations.slots import SlotMap, shard_of_slot, slot_for_identifier
from conversations.store import Keys


class UpsertRequest(msgspec.Struct, frozen=True):
    identifiers: list[Identifier]
    attributes: dict[str, Scalar]
    now: float


class Conflict(msgspec.Struct, frozen=True):
    identifier: Identifier
    owner: str
    claimant: str


class UpsertReply(msgspec.Struct, frozen=True, omit_defaults=True):
    customer_id: str = ""
    created: bool = False
    conflict: Conflict | None = None
    wrong_shard: int | None = None  # the customer lives elsewhere: ask that shard


class PreferencesRequest(msgspec.Struct, frozen=True):
    customer_id: str
    by_type: dict[str, TypePreference]
    source: str
    now: float
    replace: bool = True


class PreferencesReply(msgspec.Struct, frozen=True, omit_defaults=True):
    preferences: Preferences | None = None
    changes: list[ConsentChange] = msgspec.field(default_factory=list)
    not_found: bool = False
    wrong_shard: int | None = None


_encode = msgspec.msgpack.Encoder().encode


def encode_command(value: msgspec.Struct) -> bytes:
    return _encode(value)


decode_upsert_reply = msgspec.msgpack.Decoder(UpsertReply).decode
decode_preferences_reply = msgspec.msgpack.Decoder(PreferencesReply).decode


async def run_upsert(redis: Redis, keys: Keys, shard: int, slot_map: SlotMap, request: bytes) -> bytes:
    command = msgspec.msgpack.decode(request, type=UpsertRequest)
    owners = await owners_of(redis, keys, command.identifiers)
    for owner in set(owners.values()):
        home = shard_for_customer(owner, slot_map)
        if home is not None and home != shard and len(set(owners.values())) == 1:
            return _encode(UpsertReply(wrong_shard=home))
    # A customer created here is homed in the slot of the external id the gateway routed by.
    routed_by = next(
        (i for i in command.identifiers if i.kind is IdentifierKind.EXTERNAL_ID), command.identifiers[0]
    )
    slot = slot_for_identifier(routed_by, slot_map.slots)
    if not owners and shard_of_slot(slot_map, slot) != shard:
        return _encode(UpsertReply(wrong_shard=shard_of_slot(slot_map, slot)))
    try:
        outcome = await upsert_profile(
            redis, keys, slot, command.identifiers, command.attributes, command.now
        )
    except IdentifierConflict as exc:
        return _encode(UpsertReply(conflict=Conflict(exc.identifier, exc.owner, exc.claimant)))
    return _encode(UpsertReply(customer_id=outcome.customer_id, created=outcome.created))


def preference_changes(
    before: Preferences, by_type: dict[str, TypePreference], source: str, now: float
) -> list[ConsentChange]:
    """The consent audit records implied by moving to ``by_type`` from ``before``."""
    changes: list[ConsentChange] = []
    for message_type in sorted(set(before.by_type) | set(by_type)):
        old = set(before.by_type.get(message_type, TypePreference()).opted_out)
        new = set(by_type.get(message_type, TypePreference()).opted_out)
        for channel in sorted(new - old, key=lambda c: c.value):
            changes.append(ConsentChange(channel, ConsentState.OPTED_OUT, source, now, message_type))
        for channel in sorted(old - new, key=lambda c: c.value):
            changes.append(ConsentChange(channel, ConsentState.OPTED_IN, source, now, message_type))
    return changes


async def run_set_preferences(redis: Redis, keys: Keys, request: bytes) -> bytes:
    command = msgspec.msgpack.decode(request, type=PreferencesRequest)
    if not await redis.exists(keys.customer(command.customer_id)):
        return _encode(PreferencesReply(not_found=True))
    blob = await redis.get(keys.preferences(command.customer_id))
    before = decode_preferences(blob) if blob else None
    current = copy.deepcopy(before) if before else Preferences()
    by_type = command.by_type if command.replace else {**current.by_type, **command.by_type}
    by_type = {  # one canonical form, whatever order the caller listed opt-outs in
        t: TypePreference(p.order, tuple(sorted(set(p.opted_out), key=lambda c: c.value)))
        for t, p in by_type.items()
    }
    changes = preference_changes(current, by_type, command.source, command.now)
    current.by_type = dict(by_type)
    current.updated_at = command.now
    pipe = redis.pipeline(transaction=True)
    write_preferences(pipe, keys, command.customer_id, before, current, changes)
    await pipe.execute()
    return _encode(PreferencesReply(preferences=current, changes=changes))


class MergeRequest(msgspec.Struct, frozen=True):
    winner: str
    loser: str
    now: float


class MergeReply(msgspec.Struct, frozen=True, omit_defaults=True):
    result: MergeResult | None = None
    refused_code: str = ""
    refused_message: str = ""
    wrong_shard: int | None = None


decode_merge_reply = msgspec.msgpack.Decoder(MergeReply).decode
decode_merge_request = msgspec.msgpack.Decoder(MergeRequest).decode
