"""Ids: the ULID layout (time-ordered, Crockford base32) that message and customer ids share."""

from __future__ import annotations

from conversations.ids import new_customer_id, new_message_id, ulid

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _value(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_a_ulid_is_26_crockford_characters_carrying_its_millisecond() -> None:
    for now in (0.0, 1.0, 1_764_000_000.123, 2**48 / 1000 - 1):
        text = ulid(now)
        assert len(text) == 26 and set(text) <= set(CROCKFORD)
        assert _value(text) >> 80 == int(now * 1000)


def test_ulids_sort_by_time() -> None:
    times = [1_764_000_000.0 + n * 0.001 for n in range(200)]
    ids = [ulid(now) for now in times]
    assert sorted(ids) == ids and len(set(ids)) == len(ids)


def test_ids_carry_their_prefix() -> None:
    assert new_message_id().startswith("msg_") and len(new_message_id()) == 30
    assert new_customer_id(7).startswith("cus_7_")
