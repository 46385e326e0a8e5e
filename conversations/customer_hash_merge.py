"""Folding a merged customer's hash into the winner's: which fields the winner takes.

Beside ``customer_hash`` (which owns the layout), the one other module that knows field names:
it decides, field by field, what a merge keeps. ``merge.merge_into`` writes the result.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from conversations.customer_hash import (
    ATTRIBUTE_PREFIX,
    CREATED_AT,
    LAST_CHANNEL,
    MERGED_PREFIX,
    PROFILE_NAME,
    UPDATED_AT,
    Scalar,
    decode_attribute,
)

_IDENTIFIER_PREFIX = "ident:"
_LAST_INBOUND_PREFIX = "last_inbound_at:"


class AttributeConflict(msgspec.Struct, frozen=True):
    """Both customers had a value for an attribute; the newer one was kept."""

    attribute: str
    kept: Scalar
    discarded: Scalar
    kept_from: str


def merged_profile(
    winner: str,
    loser: str,
    winner_fields: Mapping[bytes, bytes],
    loser_fields: Mapping[bytes, bytes],
    now: float,
) -> tuple[dict[str, bytes | str], list[AttributeConflict]]:
    """The fields to set on the winner's hash, and the attribute conflicts decided on the way."""
    attributes, conflicts = _attributes(winner, loser, winner_fields, loser_fields)
    profile: dict[str, bytes | str] = {**attributes, **_scalars(winner_fields, loser_fields)}
    profile[MERGED_PREFIX + loser] = repr(now)
    profile[UPDATED_AT] = repr(now)
    return profile, conflicts


def _attributes(
    winner: str, loser: str, winner_fields: Mapping[bytes, bytes], loser_fields: Mapping[bytes, bytes]
) -> tuple[dict[str, bytes], list[AttributeConflict]]:
    """Newest value of each attribute wins; differing values are reported."""
    updates: dict[str, bytes] = {}
    conflicts: list[AttributeConflict] = []
    for name, blob in sorted(loser_fields.items()):
        if not name.startswith(ATTRIBUTE_PREFIX.encode()):
            continue
        theirs, their_at = decode_attribute(blob)
        if name not in winner_fields:
            updates[name.decode()] = blob
            continue
        ours, our_at = decode_attribute(winner_fields[name])
        if ours == theirs:
            continue
        attribute = name.decode()[len(ATTRIBUTE_PREFIX) :]
        if their_at > our_at:
            updates[name.decode()] = blob
            conflicts.append(AttributeConflict(attribute, theirs, ours, loser))
        else:
            conflicts.append(AttributeConflict(attribute, ours, theirs, winner))
    return updates, conflicts


def _scalars(winner_fields: Mapping[bytes, bytes], loser_fields: Mapping[bytes, bytes]) -> dict[str, bytes]:
    """Identifier links, last-contact times and first-seen time across both profiles."""
    updates: dict[str, bytes] = {}
    for name, value in loser_fields.items():
        key = name.decode()
        if key.startswith((_IDENTIFIER_PREFIX, MERGED_PREFIX)):
            updates[key] = value
        elif key.startswith(_LAST_INBOUND_PREFIX):
            if float(value) > float(winner_fields.get(name, b"0")):
                updates[key] = value
        elif key == CREATED_AT:
            if float(value) < float(winner_fields.get(name, value)):
                updates[key] = value
        elif key == PROFILE_NAME and name not in winner_fields:
            updates[key] = value
    latest = max(
        (
            (float(v), f)
            for f, v in {**winner_fields, **{k.encode(): v for k, v in updates.items()}}.items()
            if f.startswith(_LAST_INBOUND_PREFIX.encode())
        ),
        default=None,
    )
    if latest is not None:
        updates[LAST_CHANNEL] = latest[1].decode().split(":", 1)[1].encode()
    return updates
