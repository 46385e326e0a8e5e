"""The customer context routing decides on, read from Redis in the processor's read phase.

Everything comes from keys the shard already owns: the customer hash (identifiers,
``last_inbound_at:<channel>``, ``timezone``, ``unreachable:<channel>``), the stored
preferences, the engagement hash and the recent-sends sets used by frequency caps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from redis.asyncio.client import Pipeline

from conversations.codec import decode_preferences
from conversations.models import Channel, Identifier, IdentifierKind
from conversations.preferences import Preferences
from conversations.profiles import decode_attribute
from conversations.routing.engagement import scores_from_hash
from conversations.routing.policy import RoutingPolicy
from conversations.store import Keys

# Which identifier kinds can address each channel, best first.
ADDRESS_KINDS: dict[Channel, tuple[IdentifierKind, ...]] = {
    Channel.SMS: (IdentifierKind.PHONE,),
    Channel.VOICE: (IdentifierKind.PHONE,),
    Channel.WHATSAPP: (IdentifierKind.PHONE, IdentifierKind.WA_ID),
    Channel.RCS: (IdentifierKind.PHONE, IdentifierKind.RCS),
    Channel.EMAIL: (IdentifierKind.EMAIL,),
}


class CustomerContext(msgspec.Struct, kw_only=True):
    """What routing knows about one customer at decision time."""

    customer_id: str
    identifiers: list[Identifier] = msgspec.field(default_factory=list)
    preferences: Preferences = msgspec.field(default_factory=Preferences)
    last_inbound_at: dict[Channel, float] = msgspec.field(default_factory=dict)
    unreachable_since: dict[Channel, float] = msgspec.field(default_factory=dict)
    timezone: str = ""  # empty: the policy's default
    engagement: dict[Channel, float] = msgspec.field(default_factory=dict)
    recent_sends: dict[str, list[float]] = msgspec.field(default_factory=dict)  # type -> send times
    campaign_spent: dict[str, float] = msgspec.field(default_factory=dict)

    def address_for(self, channel: Channel) -> str | None:
        """The customer's address on ``channel`` (E.164 for phone channels), if known."""
        for kind in ADDRESS_KINDS[channel]:
            for identifier in self.identifiers:
                if identifier.kind is kind:
                    value = identifier.value
                    if kind is IdentifierKind.WA_ID and not value.startswith("+"):
                        value = "+" + value
                    return value
        return None

    def know(self, identifier: Identifier) -> None:
        """Add an identifier the request carries (a brand-new customer has none stored yet)."""
        if identifier not in self.identifiers:
            self.identifiers.insert(0, identifier)

    def count_send(self, message_type: str, at: float) -> None:
        """A send routed in this batch counts toward later caps in the same batch."""
        self.recent_sends.setdefault(message_type, []).append(at)


def capped_types(policy: RoutingPolicy) -> list[tuple[str, float]]:
    """(message type, window seconds) for every type with a frequency cap."""
    return [
        (name, rules.frequency_cap.window_seconds)
        for name, rules in sorted(policy.types.items())
        if rules.frequency_cap is not None
    ]


def queue_context_reads(
    pipe: Pipeline, keys: Keys, customer_id: str, capped: Sequence[tuple[str, float]], now: float
) -> int:
    """Queue one customer's reads on ``pipe``; returns how many replies they produce."""
    pipe.hgetall(keys.customer(customer_id))
    pipe.get(keys.preferences(customer_id))
    pipe.hgetall(keys.engagement(customer_id))
    for message_type, window in capped:
        pipe.zrangebyscore(
            keys.recent_sends(customer_id, message_type), now - window, "+inf", withscores=True
        )
    return 3 + len(capped)


def build_context(
    customer_id: str, replies: Sequence[Any], capped: Sequence[tuple[str, float]], now: float
) -> CustomerContext:
    """The context from the replies of ``queue_context_reads`` (in the same order)."""
    fields: dict[bytes, bytes] = replies[0] or {}
    context = CustomerContext(customer_id=customer_id)
    for raw_name, raw_value in fields.items():
        name = raw_name.decode()
        if name == "attr:timezone":  # attributes are msgpack (value, set_at), not text
            zone, _at = decode_attribute(raw_value)
            if isinstance(zone, str):
                context.timezone = zone
            continue
        if name.startswith("attr:"):
            continue
        value = raw_value.decode(errors="replace")
        kind, _, rest = name.partition(":")
        try:
            if kind == "ident":
                id_kind, _, id_value = rest.partition(":")
                context.identifiers.append(Identifier(IdentifierKind(id_kind), id_value))
            elif kind == "last_inbound_at":
                context.last_inbound_at[Channel(rest)] = float(value)
            elif kind == "unreachable":
                context.unreachable_since[Channel(rest)] = float(value)
            elif name == "timezone":
                context.timezone = value
        except ValueError:
            continue  # a field written by a newer version (an unknown channel): not ours to judge
    context.identifiers.sort(key=lambda i: (i.kind.value, i.value))
    if replies[1]:
        try:
            context.preferences = decode_preferences(replies[1])
        except msgspec.DecodeError:
            context.preferences = Preferences()
    context.engagement = scores_from_hash(replies[2] or {}, now)
    for (message_type, _), sends in zip(capped, replies[3:], strict=True):
        context.recent_sends[message_type] = [float(score) for _, score in sends]
    return context


def record_send(
    pipe: Pipeline, keys: Keys, customer_id: str, message_type: str, message_id: str, at: float, window: float
) -> None:
    """Count a routed send toward the type's frequency cap (and forget sends older than the window)."""
    key = keys.recent_sends(customer_id, message_type)
    pipe.zadd(key, {message_id: at})
    pipe.zremrangebyscore(key, "-inf", at - window)
    pipe.expire(key, int(window) + 60)


def mark_unreachable(pipe: Pipeline, keys: Keys, customer_id: str, channel: Channel, at: float) -> None:
    """Remember that the provider said this customer cannot be reached on ``channel``."""
    pipe.hset(keys.customer(customer_id), f"unreachable:{channel.value}", repr(at))
