"""The customer context routing decides on, built from what the batch read.

Everything comes from keys the shard already owns: the customer hash (identifiers, last
inbound time per channel, time zone, unreachable channels; see ``conversations.customer_hash``),
the stored preferences, the engagement hash and the recent-sends sets used by frequency caps.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from redis.asyncio.client import Pipeline

from conversations.customer_hash import CustomerFacts
from conversations.models import Channel, Identifier, IdentifierKind
from conversations.preferences import Preferences
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


def context_from(
    facts: CustomerFacts,
    preferences: Preferences | None,
    engagement: Mapping[bytes, bytes] | None,
    recent_sends: Mapping[str, list[float]],
    campaign_spent: dict[str, float],
    now: float,
) -> CustomerContext:
    """The context from what the batch read: the customer hash, preferences, engagement, caps."""
    return CustomerContext(
        customer_id=facts.customer_id,
        identifiers=list(facts.identifiers),
        preferences=preferences if preferences is not None else Preferences(),
        last_inbound_at=dict(facts.last_inbound_at),
        unreachable_since=dict(facts.unreachable_since),
        timezone=facts.timezone,
        engagement=scores_from_hash(engagement or {}, now),
        recent_sends={t: list(times) for t, times in recent_sends.items()},
        campaign_spent=campaign_spent,  # shared: spend in this batch counts at once
    )


def record_send(
    pipe: Pipeline, keys: Keys, customer_id: str, message_type: str, message_id: str, at: float, window: float
) -> None:
    """Count a routed send toward the type's frequency cap (and forget sends older than the window)."""
    key = keys.recent_sends(customer_id, message_type)
    pipe.zadd(key, {message_id: at})
    pipe.zremrangebyscore(key, "-inf", at - window)
    pipe.expire(key, int(window) + 60)
