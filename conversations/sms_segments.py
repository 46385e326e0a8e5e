"""SMS encoding and segment counting: GSM-7 (160/153) unless any character needs UCS-2 (70/67)."""

from __future__ import annotations

_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = "^{}\\[~]|€\f"  # each costs two septets (escape + char)
_BASIC = frozenset(_GSM7_BASIC)
_EXTENSION = frozenset(_GSM7_EXTENSION)


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 basic set or its extension table."""
    return all(ch in _BASIC or ch in _EXTENSION for ch in text)


def _ucs2_units(text: str) -> int:
    # Characters outside the BMP (most emoji) take two UTF-16 code units.
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def segment_count(text: str) -> int:
    """How many SMS segments a body takes (0 for an empty body)."""
    if not text:
        return 0
    if is_gsm7(text):
        units, single, multi = sum(2 if ch in _EXTENSION else 1 for ch in text), 160, 153
    else:
        units, single, multi = _ucs2_units(text), 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def encoding_of(text: str) -> str:
    """``GSM-7`` or ``UCS-2``."""
    return "GSM-7" if is_gsm7(text) else "UCS-2"
