"""Evaluating journey conditions: predicates on attributes and event properties, reply keywords."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from conversations.journeys.definition import EventMatch, Predicate
from conversations.journeys.instance import EventSnapshot

MISSING = object()
_EDGE_PUNCTUATION = re.compile(r"^[^\w]+|[^\w]+$")


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``cart.total``), or a sentinel when absent."""
    if path in data:
        return data[path]
    current: Any = data
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            return MISSING
    return current


def holds(predicate: Predicate, attributes: Mapping[str, Any], properties: Mapping[str, Any]) -> bool:
    """Whether ``predicate`` is true of these attributes (flat names) and event properties."""
    if predicate.attribute is not None:
        found = attributes.get(predicate.attribute, MISSING)
    else:
        found = lookup(properties, predicate.property or "")
    op, expected = predicate.op, predicate.value
    if op == "exists":
        return found is not MISSING and found is not None
    if op == "not_exists":
        return found is MISSING or found is None
    if found is MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return _same(found, expected)
    if op == "ne":
        return not _same(found, expected)
    if op == "in":
        return any(_same(found, item) for item in expected or [])
    if op == "not_in":
        return not any(_same(found, item) for item in expected or [])
    if op == "contains":
        if isinstance(found, str) and isinstance(expected, str):
            return expected.lower() in found.lower()
        if isinstance(found, list):
            return any(_same(item, expected) for item in found)
        return False
    return _compare(found, expected, op)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _compare(found: Any, expected: Any, op: str) -> bool:
    numbers = (int, float)
    comparable = (
        isinstance(found, numbers)
        and isinstance(expected, numbers)
        and not isinstance(found, bool)
        and not isinstance(expected, bool)
    ) or (isinstance(found, str) and isinstance(expected, str))
    if not comparable:
        return False
    if op == "gt":
        return bool(found > expected)
    if op == "gte":
        return bool(found >= expected)
    if op == "lt":
        return bool(found < expected)
    return bool(found <= expected)  # lte


def event_matches(match: EventMatch, event: EventSnapshot, attributes: Mapping[str, Any]) -> bool:
    """Whether ``event`` is the event ``match`` describes (name and every filter)."""
    return match.event == event.name and all(holds(p, attributes, event.properties) for p in match.filter)


def normalise_reply(text: str) -> str:
    """Lower-case, trimmed, without surrounding punctuation: ``" Yes! "`` -> ``"yes"``."""
    return _EDGE_PUNCTUATION.sub("", text.strip().lower())


def reply_matches(reply: str, keywords: list[str]) -> bool:
    """A reply matches a keyword when it is the keyword, or starts with it as a word."""
    text = normalise_reply(reply)
    if not text:
        return False
    first = normalise_reply(text.split()[0])
    wanted = {normalise_reply(k) for k in keywords}
    return text in wanted or first in wanted


def parse_instant(value: Any) -> float | None:
    """A time from an event property: unix seconds, or ISO 8601 (UTC when no offset)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None
