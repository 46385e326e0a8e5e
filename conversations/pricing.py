"""What a message costs us to send: a per-channel x country price table and one function.

Plain data so routing can compare channels before sending. SMS is priced per segment, every
other channel per message. Only US SMS ($0.0079 per segment, Twilio's list price) is a
real figure; the rest are placeholders of the right order of magnitude — set real ones with
``[prices]`` in the config file (``sms = {US = 0.0079, "*" = 0.05}``).
"""

from __future__ import annotations

from collections.abc import Mapping

import phonenumbers

from conversations.models import Channel, Identifier, IdentifierKind

ANY_COUNTRY = "*"

# USD, per segment for SMS and per message elsewhere. "*" applies where no country matches.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    Channel.SMS.value: {"US": 0.0079, "CA": 0.0079, "GB": 0.0463, "DE": 0.0882, ANY_COUNTRY: 0.05},
    Channel.WHATSAPP.value: {"US": 0.004, ANY_COUNTRY: 0.01},
    Channel.RCS.value: {"US": 0.004, ANY_COUNTRY: 0.01},
    Channel.VOICE.value: {"US": 0.014, ANY_COUNTRY: 0.05},  # per call (about a minute)
    Channel.EMAIL.value: {ANY_COUNTRY: 0.0001},
}

PriceTable = Mapping[str, Mapping[str, float]]


def merged_prices(overrides: PriceTable) -> dict[str, dict[str, float]]:
    """The default table with per-channel, per-country overrides from the config applied."""
    table = {channel: dict(prices) for channel, prices in DEFAULT_PRICES.items()}
    for channel, prices in overrides.items():
        table.setdefault(channel, {}).update({country.upper(): price for country, price in prices.items()})
    return table


def country_of(identifier: Identifier) -> str:
    """ISO country of a phone identifier ("" when unknown or not a phone)."""
    if identifier.kind is not IdentifierKind.PHONE:
        return ""
    try:
        number = phonenumbers.parse(identifier.value)
    except phonenumbers.NumberParseException:
        return ""
    # Numbers outside any assigned range (test numbers, new ranges) still price by their
    # country code's main country: +1 is priced as the US.
    region = phonenumbers.region_code_for_number(number) or phonenumbers.region_code_for_country_code(
        number.country_code or 0
    )
    return "" if region in (None, "ZZ") else region


def unit_price(channel: Channel, country: str, table: PriceTable = DEFAULT_PRICES) -> float | None:
    """The price of one segment (SMS) or one message on ``channel`` to ``country``."""
    prices = table.get(channel.value)
    if not prices:
        return None
    return prices.get(country.upper(), prices.get(ANY_COUNTRY))


def message_cost(
    channel: Channel, country: str, segments: int = 1, table: PriceTable = DEFAULT_PRICES
) -> float | None:
    """What sending one message costs: unit price x segments for SMS; None when unpriced."""
    price = unit_price(channel, country, table)
    if price is None:
        return None
    units = max(segments, 1) if channel is Channel.SMS else 1
    return round(price * units, 6)  # money in floats: round away the binary noise
