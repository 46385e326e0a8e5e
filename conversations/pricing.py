"""What a send costs: one price table per channel x destination country, and one country lookup.

Routing orders channels, applies ``max_price`` and campaign budgets with it, and each attempt
records its ``cost`` from it. SMS is priced per segment, voice per expected minute, everything
else per message; a message type may have its own rates (WhatsApp bills marketing higher).
Only US SMS ($0.0079 a segment, Twilio's list price) is a real figure; the rest are
placeholders of the right order of magnitude: set real ones with ``[prices]`` in the config.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import msgspec
import phonenumbers

from conversations.config import PricesConfig
from conversations.models import Channel
from conversations.sms_segments import segment_count

ANY_COUNTRY = "*"


class Rate(msgspec.Struct, frozen=True):
    """Price of one unit (an SMS segment, a message, a voice minute) by destination country."""

    default: float | None = None  # any other country; None: unpriced (or the base rate's)
    by_country: dict[str, float] = msgspec.field(default_factory=dict)

    def for_country(self, country: str) -> float | None:
        return self.by_country.get(country, self.default)


class PriceTable(msgspec.Struct, frozen=True):
    """Rates per channel, with per message type overrides that fall back to the channel's rate."""

    currency: str
    rates: dict[Channel, Rate]
    by_type: dict[str, dict[Channel, Rate]] = msgspec.field(default_factory=dict)
    voice_minutes: float = 1.0  # what a call is expected to last

    def unit_price(self, channel: Channel, country: str, message_type: str = "") -> float | None:
        """The price of one unit on ``channel`` to ``country``; None when the table has none."""
        for rate in (self.by_type.get(message_type, {}).get(channel), self.rates.get(channel)):
            price = rate.for_country(country.upper()) if rate is not None else None
            if price is not None:
                return price
        return None

    def cost(self, channel: Channel, country: str, message_type: str = "", segments: int = 1) -> float | None:
        """What one message costs: per segment for SMS, per expected minute for voice."""
        unit = self.unit_price(channel, country, message_type)
        if unit is None:
            return None
        units = 1.0
        if channel is Channel.SMS:
            units = max(segments, 1)
        elif channel is Channel.VOICE:
            units = self.voice_minutes
        return round(unit * units, 6)  # money in floats: round away the binary noise

    def price(self, channel: Channel, country: str, message_type: str, body: str) -> float | None:
        """The estimated cost of sending ``body`` on ``channel`` (routing's estimate)."""
        segments = segment_count(body) if channel is Channel.SMS else 1
        return self.cost(channel, country, message_type, segments)


DEFAULT_PRICES = PriceTable(
    currency="USD",
    rates={
        Channel.SMS: Rate(
            0.05,
            {"US": 0.0079, "CA": 0.0079, "GB": 0.0463, "DE": 0.0882, "FR": 0.075, "IN": 0.003, "BR": 0.05},
        ),
        # WhatsApp utility / service messages.
        Channel.WHATSAPP: Rate(
            0.02,
            {"US": 0.004, "CA": 0.004, "GB": 0.022, "DE": 0.055, "FR": 0.03, "IN": 0.0014, "BR": 0.008},
        ),
        Channel.RCS: Rate(0.01, {"US": 0.0075, "GB": 0.01, "DE": 0.012, "FR": 0.012, "BR": 0.008}),
        Channel.VOICE: Rate(0.05, {"US": 0.014, "CA": 0.014, "GB": 0.015, "DE": 0.03, "IN": 0.02}),
        Channel.EMAIL: Rate(0.0001),
    },
    by_type={
        "marketing": {
            Channel.WHATSAPP: Rate(
                0.06,
                {"US": 0.025, "CA": 0.025, "GB": 0.053, "DE": 0.137, "FR": 0.086, "IN": 0.011, "BR": 0.0625},
            ),
        },
    },
)


def configured_prices(overrides: PricesConfig, base: PriceTable = DEFAULT_PRICES) -> PriceTable:
    """``base`` with the config's ``[prices]`` applied (countries not named keep their price)."""
    rates = dict(base.rates)
    for channel in Channel:
        given = getattr(overrides, channel.value)
        if given:
            rates[channel] = _merged(rates.get(channel), given)
    by_type = {message_type: dict(typed) for message_type, typed in base.by_type.items()}
    for message_type, channels in overrides.by_type.items():
        typed = by_type.setdefault(message_type, {})
        for channel, given in channels.items():
            typed[channel] = _merged(typed.get(channel), given)
    return PriceTable(
        currency=overrides.currency or base.currency,
        rates=rates,
        by_type=by_type,
        voice_minutes=overrides.voice_minutes or base.voice_minutes,
    )


def _merged(rate: Rate | None, given: Mapping[str, float]) -> Rate:
    countries = {country.upper(): price for country, price in given.items()}
    default = countries.pop(ANY_COUNTRY, rate.default if rate is not None else None)
    return Rate(default, {**(rate.by_country if rate is not None else {}), **countries})


def country_of(phone: str | None, default: str = "") -> str:
    """ISO country of an E.164 number; ``default`` when there is none or it names no country."""
    if not phone or not phone.startswith("+"):
        return default
    return _region_of(phone) or default


# A memo of a pure function: finding the region runs the number against every region of its
# country code (25 for +1), ~12 % of a shard's time per outbound message without it.
@functools.lru_cache(maxsize=65536)
def _region_of(phone: str) -> str:
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ""
    # Numbers outside any assigned range (test numbers, new ranges) still price by their
    # country code's main country: +1 is priced as the US.
    region = phonenumbers.region_code_for_number(number) or phonenumbers.region_code_for_country_code(
        number.country_code or 0
    )
    return "" if region in (None, "ZZ") else region
