"""Time-ordered identifiers (ULID layout: 48-bit milliseconds + 80 random bits, Crockford base32)."""

from __future__ import annotations

import os
import time

from conversations.numerals import decimal

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two characters per 10 bits: 13 lookups for the 130-bit layout instead of 26 shifts (a
# message id is made per API request, so this was ~10 % of the gateway's time per send).
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def ulid(now: float | None = None) -> str:
    """A 26-character, lexicographically time-ordered unique id."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_message_id() -> str:
    """A message id: ``msg_`` + ULID."""
    return "msg_" + ulid()


def new_customer_id(home_slot: int) -> str:
    """A customer id that names its home slot, so any gateway can route to it without a lookup.

    The layout is the one ids had when they named a shard (``cus_<n>_<ULID>``): an old id's
    number reads as its slot (see conversations.slots).
    """
    return f"cus_{home_slot}_{ulid()}"


def home_slot_of(customer_id: str) -> int | None:
    """The home slot written into a customer id, or None when the id is not one of ours."""
    parts = customer_id.split("_")
    if len(parts) != 3 or parts[0] != "cus":
        return None
    return decimal(parts[1])
