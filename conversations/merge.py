"""Merging two customers who turn out to be one person.

Two steps, each on one shard and under that shard's lock:

1. ``hand_over`` on the loser's home shard: point the loser's identifiers at the winner and set
   a redirect. From here on every shard resolves those identifiers to the winner, and anything
   still addressed to the loser (status callbacks, forwarded entries) is redirected in the
   batch processor. Nothing is written to the loser any more.
2. ``merge_into`` on the winner's home shard: fold the loser's profile, preferences, consent
   log and thread into the winner in one transaction, threads merged in time order.

Both steps are idempotent, so a retried request finishes a merge that was interrupted.
"""

from __future__ import annotations

import copy
import heapq
from typing import Any

import msgspec
from redis.asyncio import Redis

from conversations.codec import (
    decode_consent_change,
    decode_message,
    decode_preferences,
    decode_thread_event,
    encode,
)
from conversations.consent import write_preferences
from conversations.customer_hash import parse_customer_hash
from conversations.customer_hash_merge import AttributeConflict, merged_profile
from conversations.models import EventLogged, Identifier, NoteLogged
from conversations.preferences import Preferences
from conversations.segments import merging as segments
from conversations.store import INGEST_FIELD, Keys


class MergeRefused(Exception):
    """The merge cannot happen (unknown customer, already merged elsewhere, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class MergeResult(msgspec.Struct, frozen=True):
    winner: str
    loser: str
    merged_at: float
    identifiers_moved: list[Identifier]
    conflicts: list[AttributeConflict]
    thread_entries_moved: int


decode_merge_result = msgspec.msgpack.Decoder(MergeResult).decode


async def hand_over(redis: Redis, keys: Keys, loser: str, winner: str, shard: int) -> list[Identifier]:
    """Step 1, on the loser's shard (``shard``): re-point its identifiers at the winner and redirect it."""
    redirect = await redis.get(keys.redirect(loser))
    if redirect is not None:
        if redirect.decode() == winner:
            return []  # already handed over: a retry
        raise MergeRefused("already_merged", f"{loser} was already merged into {redirect.decode()}")
    if await redis.get(keys.redirect(winner)) is not None:
        raise MergeRefused("already_merged", f"{winner} was merged into another customer")
    fields = await redis.hgetall(keys.customer(loser))
    if not fields:
        raise MergeRefused("customer_not_found", f"no customer {loser}")
    moved = parse_customer_hash(loser, fields).identifiers
    segment_facts = await redis.get(keys.segment_facts(loser))
    pipe = redis.pipeline(transaction=True)
    for identifier in moved:
        pipe.set(keys.identity(identifier), winner)
    pipe.set(keys.redirect(loser), winner)
    segments.leave_all(pipe, keys, shard, loser, segment_facts)
    await pipe.execute()
    return moved


def merge_preferences(winner: Preferences | None, loser: Preferences | None) -> Preferences | None:
    """Per message type the more recently set preferences win; opt-outs from either side stay.

    Keeping every opt-out is deliberately conservative: a person who said STOP on one of their
    numbers is not messaged because a second profile of theirs never did.
    """
    if winner is None or loser is None:
        return copy.deepcopy(winner or loser)
    merged = copy.deepcopy(winner)
    newer = loser.updated_at > winner.updated_at
    for message_type, preference in loser.by_type.items():
        if message_type not in merged.by_type or newer:
            merged.by_type[message_type] = preference
    for channel, change in loser.channel_opt_outs.items():
        current = merged.channel_opt_outs.get(channel)
        if current is None or change.at > current.at:
            merged.channel_opt_outs[channel] = change
    merged.updated_at = max(winner.updated_at, loser.updated_at)
    return merged


def _merge_streams(
    ours: list[tuple[bytes, dict[bytes, bytes]]], theirs: list[tuple[bytes, dict[bytes, bytes]]], at_of: Any
) -> list[bytes]:
    """Both streams' payloads in time order (stable: ties keep each stream's own order)."""
    keyed_ours = [(at_of(f[INGEST_FIELD]), 0, i, f[INGEST_FIELD]) for i, (_, f) in enumerate(ours)]
    keyed_theirs = [(at_of(f[INGEST_FIELD]), 1, i, f[INGEST_FIELD]) for i, (_, f) in enumerate(theirs)]
    return [payload for *_, payload in heapq.merge(keyed_ours, keyed_theirs)]


async def merge_into(
    redis: Redis, keys: Keys, winner: str, loser: str, now: float, shard: int
) -> MergeResult:
    """Step 2, on the winner's shard (``shard``): fold everything of the loser into the winner, atomically."""
    done = await redis.get(keys.merge_result(loser))
    if done is not None:
        result = decode_merge_result(done)
        if result.winner != winner:
            raise MergeRefused("already_merged", f"{loser} was already merged into {result.winner}")
        return result
    winner_fields = await redis.hgetall(keys.customer(winner))
    loser_fields = await redis.hgetall(keys.customer(loser))
    if not winner_fields:
        raise MergeRefused("customer_not_found", f"no customer {winner}")
    profile, conflicts = merged_profile(winner, loser, winner_fields, loser_fields, now)
    winner_thread = await redis.xrange(keys.thread(winner))
    loser_thread = await redis.xrange(keys.thread(loser))
    winner_log = await redis.xrange(keys.consent_log(winner))
    loser_log = await redis.xrange(keys.consent_log(loser))
    blobs = await redis.mget(keys.preferences(winner), keys.preferences(loser))
    segment_facts = await redis.mget(keys.segment_facts(winner), keys.segment_facts(loser))
    winner_prefs, loser_prefs = (decode_preferences(b) if b else None for b in blobs)
    loser_events = [decode_thread_event(f[INGEST_FIELD]) for _, f in loser_thread]
    loser_messages = sorted(
        {e.message_id for e in loser_events if not isinstance(e, NoteLogged | EventLogged)}
    )
    records = await redis.mget([keys.message(m) for m in loser_messages]) if loser_messages else []

    pipe = redis.pipeline(transaction=True)
    pipe.hset(keys.customer(winner), mapping=profile)
    for blob in records:
        if blob:
            record = decode_message(blob)
            record.customer_id = winner
            pipe.set(keys.message(record.id), encode(record))
    if loser_thread:
        merged = _merge_streams(winner_thread, loser_thread, lambda p: decode_thread_event(p).at)
        pipe.delete(keys.merging_thread(winner))
        for payload in merged:
            pipe.xadd(keys.merging_thread(winner), {INGEST_FIELD: payload})
        pipe.rename(keys.merging_thread(winner), keys.thread(winner))
    if loser_log:
        merged = _merge_streams(winner_log, loser_log, lambda p: decode_consent_change(p).at)
        pipe.delete(keys.merging_consent_log(winner))
        for payload in merged:
            pipe.xadd(keys.merging_consent_log(winner), {b"d": payload})
        pipe.rename(keys.merging_consent_log(winner), keys.consent_log(winner))
    merged_prefs = merge_preferences(winner_prefs, loser_prefs)
    if merged_prefs is not None:
        write_preferences(pipe, keys, winner, winner_prefs, merged_prefs, [])
        if loser_prefs is not None:  # the loser no longer counts in the adoption figures
            write_preferences(pipe, keys, loser, loser_prefs, Preferences(), [])
    result = MergeResult(
        winner=winner,
        loser=loser,
        merged_at=now,
        identifiers_moved=parse_customer_hash(loser, loser_fields).identifiers,
        conflicts=conflicts,
        thread_entries_moved=len(loser_thread),
    )
    winner_facts, loser_facts = segment_facts
    segments.fold_into(pipe, keys, shard, winner, loser, winner_facts, loser_facts, now)
    pipe.set(keys.merge_result(loser), encode(result))
    pipe.delete(keys.customer(loser), keys.thread(loser), keys.consent_log(loser), keys.preferences(loser))
    await pipe.execute()
    return result
