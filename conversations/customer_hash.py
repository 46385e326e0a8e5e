"""The customer hash (``Keys.customer``): its field names, a typed view of it, and its writes.

This module is the one place that knows how the hash is laid out. Readers parse it with
``parse_customer_hash``; writers build their field mappings with the helpers here, so a field
is spelled once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from conversations.models import Channel, Identifier, IdentifierKind

Scalar = str | int | float | bool | None

CREATED_AT = "created_at"
UPDATED_AT = "updated_at"
LAST_CHANNEL = "last_channel"
PROFILE_NAME = "profile_name"
SESSION_ID = "session_id"
SESSION_LAST_AT = "session_last_at"
LEGACY_TIMEZONE = "timezone"  # before attributes were stored as attr:<name>
ATTRIBUTE_PREFIX = "attr:"


MERGED_PREFIX = "merged:"  # merged:<loser id>: the customers folded into this one

_attribute_encoder = msgspec.msgpack.Encoder()
_attribute_decode = msgspec.msgpack.Decoder(tuple[Scalar, float]).decode


def encode_attribute(value: Scalar, at: float) -> bytes:
    """An attribute's stored form: msgpack ``(value, set_at)``, so merges keep the newest."""
    return _attribute_encoder.encode((value, at))


def decode_attribute(blob: bytes) -> tuple[Scalar, float]:
    return _attribute_decode(blob)


def identifier_field(identifier: Identifier) -> str:
    """The field that links an identifier to the customer (the global index points back)."""
    return f"ident:{identifier.kind.value}:{identifier.value}"


def last_inbound_field(channel: Channel) -> str:
    """When the customer last wrote on ``channel`` (opens WhatsApp's 24-hour window)."""
    return f"last_inbound_at:{channel.value}"


def unreachable_field(channel: Channel) -> str:
    """When a provider last said the customer cannot be reached on ``channel``."""
    return f"unreachable:{channel.value}"


def attribute_field(name: str) -> str:
    return ATTRIBUTE_PREFIX + name


class CustomerSession(msgspec.Struct, frozen=True):
    """The customer's open conversation session, as stored."""

    id: str
    last_at: float


class CustomerFacts(msgspec.Struct, kw_only=True):
    """The customer hash, typed: what a batch and the API know about a customer at a glance."""

    customer_id: str
    identifiers: list[Identifier] = msgspec.field(default_factory=list)
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    last_channel: Channel | None = None
    last_inbound_at: dict[Channel, float] = msgspec.field(default_factory=dict)
    unreachable_since: dict[Channel, float] = msgspec.field(default_factory=dict)
    profile_name: str = ""
    session: CustomerSession | None = None
    merged_from: list[str] = msgspec.field(default_factory=list)
    created_at: float | None = None
    updated_at: float | None = None
    legacy_timezone: str = ""

    @property
    def exists(self) -> bool:
        return self.created_at is not None or bool(self.identifiers)

    @property
    def timezone(self) -> str:
        zone = self.attributes.get("timezone")
        return zone if isinstance(zone, str) else self.legacy_timezone


def parse_customer_hash(customer_id: str, fields: Mapping[bytes, bytes] | None) -> CustomerFacts:
    """The typed view of a customer hash (fields written by a newer version are skipped)."""
    facts = CustomerFacts(customer_id=customer_id)
    session_id, session_last_at = "", None
    for raw_name, raw_value in (fields or {}).items():
        name = raw_name.decode()
        if name.startswith(ATTRIBUTE_PREFIX):  # attributes are msgpack (value, set_at), not text
            facts.attributes[name[len(ATTRIBUTE_PREFIX) :]] = decode_attribute(raw_value)[0]
            continue
        if name.startswith(MERGED_PREFIX):
            facts.merged_from.append(name[len(MERGED_PREFIX) :])
            continue
        value = raw_value.decode(errors="replace")
        kind, _, rest = name.partition(":")
        try:
            if kind == "ident":
                id_kind, _, id_value = rest.partition(":")
                facts.identifiers.append(Identifier(IdentifierKind(id_kind), id_value))
            elif kind == "last_inbound_at":
                facts.last_inbound_at[Channel(rest)] = float(value)
            elif kind == "unreachable":
                facts.unreachable_since[Channel(rest)] = float(value)
            elif name == LAST_CHANNEL:
                facts.last_channel = Channel(value)
            elif name == PROFILE_NAME:
                facts.profile_name = value
            elif name == SESSION_ID:
                session_id = value
            elif name == SESSION_LAST_AT:
                session_last_at = float(value)
            elif name == CREATED_AT:
                facts.created_at = float(value)
            elif name == UPDATED_AT:
                facts.updated_at = float(value)
            elif name == LEGACY_TIMEZONE:
                facts.legacy_timezone = value
        except ValueError:
            continue  # a field written by a newer version (an unknown channel): not ours to judge
    facts.merged_from.sort()
    if session_id and session_last_at is not None:
        facts.session = CustomerSession(session_id, session_last_at)
    facts.identifiers.sort(key=lambda i: (i.kind.value, i.value))
    return facts


class CustomerHashWrites:
    """One batch's changes to customer hashes, written as one HSET per customer at flush."""

    def __init__(self) -> None:
        self._fields: dict[str, dict[str, str | bytes]] = {}
        self._only_new: dict[str, dict[str, str]] = {}  # written with HSETNX

    def touch(self, customer_id: str, at: float, identifier: Identifier | None = None) -> None:
        """The customer was seen (created if new) at ``at``, through ``identifier``."""
        fields = self._fields.setdefault(customer_id, {})
        fields[UPDATED_AT] = repr(at)
        fields.setdefault(CREATED_AT, repr(at))  # only kept where the hash has none (HSETNX)
        if identifier is not None:
            fields[identifier_field(identifier)] = "1"

    def inbound(
        self, customer_id: str, channel: Channel, at: float, profile_name: str = "", replace_name: bool = True
    ) -> None:
        """An inbound message; ``profile_name`` replaces the stored one, or with ``replace_name``
        False is only kept where the customer has none (HSETNX)."""
        fields = self._fields.setdefault(customer_id, {})
        fields[LAST_CHANNEL] = channel.value
        field = last_inbound_field(channel)
        fields[field] = repr(max(at, float(fields.get(field, at))))
        if profile_name and replace_name:
            fields[PROFILE_NAME] = profile_name
        elif profile_name:
            self._only_new.setdefault(customer_id, {}).setdefault(PROFILE_NAME, profile_name)

    def session(self, customer_id: str, session: CustomerSession) -> None:
        fields = self._fields.setdefault(customer_id, {})
        fields[SESSION_ID] = session.id
        fields[SESSION_LAST_AT] = repr(session.last_at)

    def attributes(self, customer_id: str, encoded: dict[str, bytes], at: float) -> None:
        """Attributes set by automation (values already encoded with their time)."""
        fields = self._fields.setdefault(customer_id, {})
        fields.update({attribute_field(name): value for name, value in encoded.items()})
        fields[UPDATED_AT] = repr(at)

    def unreachable(self, customer_id: str, channel: Channel, at: float) -> None:
        self._fields.setdefault(customer_id, {})[unreachable_field(channel)] = repr(at)

    def flush(self, tx: Any, key_of: Any) -> None:
        """Queue the writes on ``tx``; ``key_of(customer_id)`` names the hash."""
        for customer_id, fields in self._fields.items():
            key = key_of(customer_id)
            created = fields.pop(CREATED_AT, None)
            if created is not None:
                tx.hsetnx(key, CREATED_AT, created)
            for name, value in self._only_new.get(customer_id, {}).items():
                if name not in fields:  # a replacing write in the same batch wins
                    tx.hsetnx(key, name, value)
            if fields:
                tx.hset(key, mapping=fields)
        self._fields = {}
        self._only_new = {}
