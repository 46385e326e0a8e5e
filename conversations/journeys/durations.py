"""Durations in journey files: ``30s``, ``4h``, ``14d``, ``1h30m`` or a number of seconds."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
EXPECTED = "expected duration like 30s, 4h or 14d"


class Duration:
    """A non-negative length of time, remembered with the text it was written as."""

    __slots__ = ("seconds", "text")

    def __init__(self, seconds: float, text: str = "") -> None:
        self.seconds = seconds
        self.text = text or format_duration(seconds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)

    def __repr__(self) -> str:
        return f"Duration({self.text})"


def parse_duration(raw: object) -> Duration:
    """Parse ``raw`` (a string or seconds); ValueError with the expected form otherwise."""
    if isinstance(raw, bool):
        raise ValueError(EXPECTED)
    if isinstance(raw, int | float):
        if raw < 0:
            raise ValueError(EXPECTED)
        return Duration(float(raw))
    if not isinstance(raw, str):
        raise ValueError(EXPECTED)
    text = raw.strip().lower()
    if not text:
        raise ValueError(EXPECTED)
    position = 0
    total = 0.0
    for match in _PART.finditer(text):
        if text[position : match.start()].strip():
            raise ValueError(EXPECTED)
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position == 0 or text[position:].strip():
        raise ValueError(EXPECTED)
    return Duration(total, raw.strip())


def format_duration(seconds: float) -> str:
    """The shortest exact text for ``seconds`` (``86400`` -> ``1d``)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
