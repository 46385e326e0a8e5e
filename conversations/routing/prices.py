"""What a send costs: a price table per channel x destination country (SMS per segment).

The default figures are illustrative list prices in USD, in the right order of magnitude for
each channel; a deployment replaces them with its own contracts (``PriceTable`` is plain data,
so a TOML or JSON file converts into it with ``msgspec.convert``).
"""

from __future__ import annotations

import msgspec

from channels.sms_segments import segment_count
from conversations.models import Channel


class Rate(msgspec.Struct, frozen=True):
    """Price of one unit (an SMS segment, a WhatsApp message, a voice minute, an email)."""

    default: float
    by_country: dict[str, float] = msgspec.field(default_factory=dict)

    def for_country(self, country: str) -> float:
        return self.by_country.get(country, self.default)


class PriceTable(msgspec.Struct, frozen=True):
    """Rates per channel, with per message type overrides (WhatsApp bills marketing higher)."""

    currency: str
    rates: dict[Channel, Rate]
    by_type: dict[str, dict[Channel, Rate]] = msgspec.field(default_factory=dict)
    voice_minutes: float = 1.0  # what a call is expected to last, for its estimate

    def price(self, channel: Channel, country: str, message_type: str, body: str) -> float | None:
        """The estimated cost of sending ``body`` on ``channel``; None when the table has no rate."""
        rate = self.by_type.get(message_type, {}).get(channel) or self.rates.get(channel)
        if rate is None:
            return None
        unit = rate.for_country(country)
        if channel is Channel.SMS:
            return unit * max(1, segment_count(body))
        if channel is Channel.VOICE:
            return unit * self.voice_minutes
        return unit


DEFAULT_PRICES = PriceTable(
    currency="USD",
    rates={
        Channel.SMS: Rate(
            0.0600,
            {
                "US": 0.0079,
                "CA": 0.0079,
                "GB": 0.0400,
                "DE": 0.0800,
                "FR": 0.0750,
                "IN": 0.0030,
                "BR": 0.0500,
            },
        ),
        # WhatsApp utility / service messages.
        Channel.WHATSAPP: Rate(
            0.0200,
            {
                "US": 0.0040,
                "CA": 0.0040,
                "GB": 0.0220,
                "DE": 0.0550,
                "FR": 0.0300,
                "IN": 0.0014,
                "BR": 0.0080,
            },
        ),
        Channel.RCS: Rate(0.0100, {"US": 0.0075, "GB": 0.0100, "DE": 0.0120, "FR": 0.0120, "BR": 0.0080}),
        Channel.VOICE: Rate(0.0500, {"US": 0.0140, "CA": 0.0140, "GB": 0.0150, "DE": 0.0300, "IN": 0.0200}),
        Channel.EMAIL: Rate(0.0001),
    },
    by_type={
        "marketing": {
            Channel.WHATSAPP: Rate(
                0.0600,
                {
                    "US": 0.0250,
                    "CA": 0.0250,
                    "GB": 0.0530,
                    "DE": 0.1370,
                    "FR": 0.0860,
                    "IN": 0.0110,
                    "BR": 0.0625,
                },
            ),
        },
    },
)
