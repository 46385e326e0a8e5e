"""SMS encoding and segment counting: GSM-7 (160/153) unless any character needs UCS-2 (70/67).

UCS-2 is counted in UTF-16 code units, as handsets and carriers do: a character outside the
Basic Multilingual Plane (most emoji) takes two. A long message is split into segments whose
boundaries never cut a character in half (a surrogate pair, or a GSM-7 escape and the
character it escapes), so a segment may hold one unit less than its capacity.
"""

from __future__ import annotations

from collections.abc import Iterable

_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = "^{}\\[~]|€\f"  # each costs two septets (escape + char)
_BASIC = frozenset(_GSM7_BASIC)
_EXTENSION = frozenset(_GSM7_EXTENSION)

GSM7_SINGLE, GSM7_MULTI = 160, 153  # septets in one SMS, and per segment of a concatenated one
UCS2_SINGLE, UCS2_MULTI = 70, 67  # UTF-16 code units, likewise


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 basic set or its extension table."""
    return all(ch in _BASIC or ch in _EXTENSION for ch in text)


def utf16_units(ch: str) -> int:
    """UTF-16 code units of one character: two for a character outside the BMP."""
    return 2 if ord(ch) > 0xFFFF else 1


def _septets(ch: str) -> int:
    return 2 if ch in _EXTENSION else 1


def _packed(widths: Iterable[int], single: int, multi: int) -> int:
    """Segments needed for characters of these widths; a character never straddles two."""
    widths = list(widths)
    if sum(widths) <= single:
        return 1
    segments, used = 1, 0
    for width in widths:
        if used + width > multi:
            segments, used = segments + 1, 0
        used += width
    return segments


def segment_count(text: str) -> int:
    """How many SMS segments a body takes (0 for an empty body)."""
    if not text:
        return 0
    if is_gsm7(text):
        return _packed(map(_septets, text), GSM7_SINGLE, GSM7_MULTI)
    return _packed(map(utf16_units, text), UCS2_SINGLE, UCS2_MULTI)


def encoding_of(text: str) -> str:
    """``GSM-7`` or ``UCS-2``."""
    return "GSM-7" if is_gsm7(text) else "UCS-2"
