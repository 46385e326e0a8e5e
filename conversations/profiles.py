"""Customer profiles: identifiers, attributes (each with the time it was set), and upserts.

A profile is a Redis hash. Identifier links are fields ``ident:<kind>:<value>`` mirrored by the
global index ``idx:<kind>:<value> -> customer id``; attributes are ``attr:<name>`` fields holding
msgpack ``[value, set_at]`` so that a merge can keep the newest value of each.
"""

from __future__ import annotations

import enum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from redis.asyncio import Redis

from conversations.customer_hash import (
    CREATED_AT,
    UPDATED_AT,
    Scalar,
    attribute_field,
    encode_attribute,
    identifier_field,
    parse_customer_hash,
)
from conversations.ids import new_customer_id
from conversations.models import Channel, Identifier, IdentifierKind
from conversations.store import Keys


class LifecycleStage(enum.StrEnum):
    NEW = "new"
    ACTIVE = "active"
    EXPERT = "expert"
    PAYING = "paying"


class Attributes(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The attributes a backend may set; ``custom`` holds free ones."""

    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    lifecycle_stage: LifecycleStage | None = None
    custom: dict[str, Scalar] = msgspec.field(default_factory=dict)

    def flat(self) -> dict[str, Scalar]:
        """Attribute name -> value for every attribute this struct sets."""
        values: dict[str, Scalar] = {}
        for name in ("name", "locale", "timezone", "lifecycle_stage"):
            value = getattr(self, name)
            if value is not None:
                values[name] = value.value if isinstance(value, enum.Enum) else value
        values.update({f"custom.{key}": value for key, value in self.custom.items()})
        return values


class InvalidAttribute(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def validate_attributes(attributes: Attributes) -> None:
    """Checks msgspec cannot express: a real IANA time zone, sane custom keys."""
    if attributes.timezone is not None:
        try:
            ZoneInfo(attributes.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidAttribute(
                "attributes.timezone", f"unknown time zone {attributes.timezone!r}"
            ) from None
    for key in attributes.custom:
        if not key or len(key) > 64 or ":" in key:
            raise InvalidAttribute(
                f"attributes.custom.{key}", "custom attribute names are 1-64 characters, no ':'"
            )


class Profile(msgspec.Struct, kw_only=True):
    """A customer as the API shows it."""

    id: str
    identifiers: list[Identifier]
    attributes: dict[str, Any]
    created_at: float
    updated_at: float
    last_channel: Channel | None = None
    merged_from: list[str] = msgspec.field(default_factory=list)


def profile_from_hash(customer_id: str, fields: dict[bytes, bytes]) -> Profile | None:
    """Build the API view of a profile hash (None when the hash is empty)."""
    if not fields:
        return None
    facts = parse_customer_hash(customer_id, fields)
    attributes: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for name, value in facts.attributes.items():
        if name.startswith("custom."):
            custom[name[7:]] = value
        else:
            attributes[name] = value
    if custom:
        attributes["custom"] = dict(sorted(custom.items()))
    created = facts.created_at or 0.0
    return Profile(
        id=customer_id,
        identifiers=facts.identifiers,
        attributes=attributes,
        created_at=created,
        updated_at=facts.updated_at if facts.updated_at is not None else created,
        last_channel=facts.last_channel,
        merged_from=facts.merged_from,
    )


async def read_profile(redis: Redis, keys: Keys, customer_id: str) -> Profile | None:
    return profile_from_hash(customer_id, await redis.hgetall(keys.customer(customer_id)))


class IdentifierConflict(Exception):
    """An identifier is already owned by another customer: never steal it silently."""

    def __init__(self, identifier: Identifier, owner: str, claimant: str) -> None:
        super().__init__(f"{identifier.kind.value} {identifier.value} already belongs to customer {owner}")
        self.identifier = identifier
        self.owner = owner
        self.claimant = claimant


class UpsertOutcome(msgspec.Struct):
    customer_id: str
    created: bool
    linked: list[Identifier]


async def owners_of(redis: Redis, keys: Keys, identifiers: list[Identifier]) -> dict[Identifier, str]:
    """Which customer owns each identifier (absent when nobody does)."""
    found = await redis.mget([keys.identity(i) for i in identifiers])
    return {i: owner.decode() for i, owner in zip(identifiers, found, strict=True) if owner}


async def upsert_profile(
    redis: Redis,
    keys: Keys,
    home_slot: int,
    identifiers: list[Identifier],
    attributes: dict[str, Scalar],
    now: float,
) -> UpsertOutcome:
    """Find the one customer these identifiers name (or create one), link them all, set attributes.

    Raises IdentifierConflict when the identifiers already belong to two different customers.
    Run it on the customer's home shard (under the shard's lock) so it never races a batch.
    """
    owners = await owners_of(redis, keys, identifiers)
    distinct = sorted(set(owners.values()))
    if len(distinct) > 1:
        first = next(i for i in identifiers if owners.get(i) == distinct[1])
        raise IdentifierConflict(first, distinct[1], distinct[0])
    created = not distinct
    customer_id = distinct[0] if distinct else new_customer_id(home_slot)
    external = next((i for i in identifiers if i.kind is IdentifierKind.EXTERNAL_ID), None)
    if distinct and external is not None and external not in owners:
        # The other identifiers belong to a customer the backend already knows by another
        # external id: linking this one would merge two of the backend's users silently.
        known = await redis.hkeys(keys.customer(customer_id))
        if any(f.startswith(b"ident:external_id:") for f in known):
            claimed = next(i for i in identifiers if i in owners)
            raise IdentifierConflict(claimed, customer_id, "")
    unlinked = [i for i in identifiers if i not in owners]
    if unlinked:
        pipe = redis.pipeline(transaction=False)
        for ident in unlinked:
            pipe.set(keys.identity(ident), customer_id, nx=True, get=True)
        previous = await pipe.execute()
        for ident, owner in zip(unlinked, previous, strict=True):
            if owner and owner.decode() != customer_id:  # lost a race with concurrent traffic
                raise IdentifierConflict(ident, owner.decode(), customer_id)
    pipe = redis.pipeline(transaction=True)
    key = keys.customer(customer_id)
    pipe.hsetnx(key, CREATED_AT, repr(now))
    fields: dict[str, bytes | str] = {UPDATED_AT: repr(now)}
    fields.update({identifier_field(i): "1" for i in identifiers})
    fields.update({attribute_field(name): encode_attribute(value, now) for name, value in attributes.items()})
    pipe.hset(key, mapping=fields)
    await pipe.execute()
    return UpsertOutcome(customer_id, created, unlinked)
