"""SMS segments (GSM-7 160/153, UCS-2 70/67, extension characters count twice) and cost on the record."""

from __future__ import annotations

import pytest

from conversations.config import PricesConfig
from conversations.models import Channel
from conversations.pricing import DEFAULT_PRICES, configured_prices, country_of
from conversations.sms_segments import encoding_of, segment_count
from tests.support.email import message_record
from tests.support.stack import Stack, eventually, unique_phone


@pytest.mark.parametrize(
    "text, segments, encoding",
    [
        ("a" * 160, 1, "GSM-7"),
        ("a" * 161, 2, "GSM-7"),
        ("a" * 306, 2, "GSM-7"),  # 2 x 153
        ("a" * 307, 3, "GSM-7"),
        ("é" * 160, 1, "GSM-7"),  # é is in the GSM-7 basic set
        ("€" * 80, 1, "GSM-7"),  # extension characters take two septets each
        ("€" * 81, 2, "GSM-7"),
        ("a" * 159 + "[", 2, "GSM-7"),  # 159 + 2 = 161 septets
        ("a" * 158 + "^", 1, "GSM-7"),
        ("ж" * 70, 1, "UCS-2"),
        ("ж" * 71, 2, "UCS-2"),
        ("ж" * 134, 2, "UCS-2"),  # 2 x 67
        ("ж" * 135, 3, "UCS-2"),
        ("a" * 69 + "😀", 2, "UCS-2"),  # one emoji: all UCS-2, and it takes two code units
        ("a" * 68 + "😀", 1, "UCS-2"),
        ("𐀀" * 35, 1, "UCS-2"),  # 70 UTF-16 code units
        ("𐀀" * 36, 2, "UCS-2"),
        # A surrogate pair never straddles two segments: 66 + (2 + 65) + 1 units, not 134 / 67.
        ("a" * 66 + "😀" + "a" * 66, 3, "UCS-2"),
        # Nor does a GSM-7 escape and its character: 152 + (2 + 151) + 1 septets, not 306 / 153.
        ("a" * 152 + "€" + "a" * 152, 3, "GSM-7"),
        ("", 0, "GSM-7"),
    ],
)
def test_segment_counts(text: str, segments: int, encoding: str) -> None:
    assert segment_count(text) == segments
    assert encoding_of(text) == encoding


def test_cost_is_per_segment_for_sms_and_per_message_elsewhere() -> None:
    assert DEFAULT_PRICES.cost(Channel.SMS, "US", segments=1) == 0.0079
    assert DEFAULT_PRICES.cost(Channel.SMS, "US", segments=3) == 0.0237
    assert DEFAULT_PRICES.cost(Channel.SMS, "ZZ", segments=2) == 0.1  # unknown country: the "*" price
    assert DEFAULT_PRICES.cost(Channel.EMAIL, "", segments=0) == 0.0001
    assert DEFAULT_PRICES.cost(Channel.WHATSAPP, "US", segments=5) == 0.004  # segments mean nothing there
    table = configured_prices(PricesConfig(sms={"us": 0.01}, email={"*": 0}))
    assert table.cost(Channel.SMS, "US", segments=2) == 0.02
    assert table.cost(Channel.SMS, "GB", segments=1) == 0.0463  # untouched defaults remain
    assert table.cost(Channel.EMAIL, "", segments=0) == 0


def test_country_comes_from_the_phone_number() -> None:
    assert country_of("+14155550100") == "US"
    assert country_of("+447700900123") == "GB"
    assert country_of("a@example.com") == ""  # not a phone: the default
    assert country_of("a@example.com", "US") == "US"


async def _sent(stack: Stack, message_id: str) -> dict | None:
    record = await message_record(stack, message_id)
    return record if record and record["status"] == "delivered" else None


@pytest.mark.parametrize(
    "body, segments, encoding, cost",
    [
        ("Your order shipped", 1, "GSM-7", 0.0079),
        ("x" * 161, 2, "GSM-7", 0.0158),
        ("Votre commande a été expédiée {promo} " + "y" * 130, 2, "GSM-7", 0.0158),
        ("Ваш заказ отправлен", 1, "UCS-2", 0.0079),
        ("Ваш заказ отправлен. " * 4, 2, "UCS-2", 0.0158),
    ],
)
async def test_outbound_sms_records_segments_encoding_and_cost(
    stack: Stack, body: str, segments: int, encoding: str, cost: float
) -> None:
    status, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": unique_phone()}, "channel": "sms", "body": body}
    )
    assert status == 202, accepted
    record = await eventually(lambda: _sent(stack, accepted["id"]))
    assert (record["segments"], record["encoding"]) == (segments, encoding)
    assert record["cost"] == pytest.approx(cost)
    customer_id = record["customer_id"]
    (entry,) = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "message"]
    assert (entry["segments"], entry["encoding"], entry["cost"]) == (segments, encoding, record["cost"])
