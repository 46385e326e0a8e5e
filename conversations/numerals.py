"""Strict reading of numbers that arrive as text: ASCII digits only, within the range we store.

``str.isdigit`` also accepts superscripts and other scripts' digits (``²``, ``٣``) that
``int()`` then rejects or reads differently, so every decimal from outside goes through here.
"""

from __future__ import annotations

import re

_DECIMAL = re.compile(r"[0-9]{1,20}")
STREAM_ID_PART_MAX = 2**64 - 1  # Redis stream ids are two unsigned 64-bit integers


def decimal(text: str, maximum: int = STREAM_ID_PART_MAX) -> int | None:
    """``text`` as a non-negative integer, or None unless it is 1-20 ASCII digits up to ``maximum``."""
    if _DECIMAL.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= maximum else None


def stream_id(text: str) -> tuple[int, int] | None:
    """A Redis stream id ``<ms>-<seq>`` as a comparable pair, or None when Redis would refuse it.

    The very last id is refused too: nothing can follow it, so Redis rejects it as an exclusive start.
    """
    ms, sep, seq = text.partition("-")
    pair = (decimal(ms), decimal(seq)) if sep else (None, None)
    if pair[0] is None or pair[1] is None or pair == (STREAM_ID_PART_MAX, STREAM_ID_PART_MAX):
        return None
    return pair[0], pair[1]
