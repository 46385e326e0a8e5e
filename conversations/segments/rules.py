"""Segment rules: a small typed language (``all``/``any``/``not`` over leaves) and its evaluation.

Parsing turns plain data (from JSON or YAML) into frozen structs and names the offending field
on any error. Evaluation is pure: a rule, a ``Subject`` (the customer's compact facts) and
``now`` give whether the customer matches and the next moment the answer can change by time
alone (a window sliding past an event, ``created_within`` running out), for a durable timer.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from conversations.journeys.durations import parse_duration
from conversations.models import Channel
from conversations.preferences import Preferences

MAX_DEPTH = 8
MAX_LEAVES = 64
MAX_WITHIN = 400 * 86400.0  # the facts keep day buckets this long
DAY = 86400.0
RECENT = 32  # exact timestamps kept per series; older events only in day buckets

Scalar = str | int | float | bool | None

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_EVENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$")
BUILTIN_ATTRIBUTES = ("name", "locale", "timezone", "lifecycle_stage")


class RuleError(ValueError):
    """An invalid segment rule; ``field`` is the path (``rule.all[1].within``)."""

    def __init__(self, field: str, message: str, code: str = "invalid_segment") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


class AttributeOp(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EXISTS = "exists"
    CONTAINS = "contains"


class CountOp(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


class EngagementName(enum.StrEnum):
    """What a customer did with our messages (``replied``: any inbound message)."""

    DELIVERED = "delivered"
    READ = "read"
    OPENED = "opened"
    CLICKED = "clicked"
    REPLIED = "replied"
    CONVERTED = "converted"


class CountTest(msgspec.Struct, frozen=True):
    op: CountOp = CountOp.GTE
    value: int = 1

    def holds(self, count: int) -> bool:
        return _compare_counts(self.op, count, self.value)


class AttributeRule(msgspec.Struct, frozen=True, tag="attribute"):
    path: str
    op: AttributeOp
    value: Any = None


class EventRule(msgspec.Struct, frozen=True, tag="event"):
    name: str
    where: tuple[tuple[str, Scalar], ...] = ()  # property equalities, sorted by name
    count: CountTest = CountTest()
    within: float | None = None

    @property
    def series(self) -> str:
        return event_series(self.name, self.where)


class EngagementRule(msgspec.Struct, frozen=True, tag="engagement"):
    kind: EngagementName
    channel: Channel | None = None  # None: any channel
    count: CountTest = CountTest()
    within: float | None = None

    @property
    def series(self) -> str:
        return engagement_series(self.kind, self.channel)


class ReachableRule(msgspec.Struct, frozen=True, tag="reachable"):
    channel: Channel
    message_type: str


class PrefersRule(msgspec.Struct, frozen=True, tag="prefers"):
    channel: Channel
    message_type: str


class SegmentRule(msgspec.Struct, frozen=True, tag="segment"):
    name: str


class CreatedWithinRule(msgspec.Struct, frozen=True, tag="created_within"):
    within: float


class AllRule(msgspec.Struct, frozen=True, tag="all"):
    rules: tuple[Rule, ...]


class AnyRule(msgspec.Struct, frozen=True, tag="any"):
    rules: tuple[Rule, ...]


class NotRule(msgspec.Struct, frozen=True, tag="not"):
    rule: Rule


Leaf = (
    AttributeRule | EventRule | EngagementRule | ReachableRule | PrefersRule | SegmentRule | CreatedWithinRule
)
Rule = AllRule | AnyRule | NotRule | Leaf


def event_series(name: str, where: tuple[tuple[str, Scalar], ...] = ()) -> str:
    """The facts series counting events ``name`` (with these property values)."""
    if not where:
        return f"e:{name}"
    return f"e:{name}?" + msgspec.json.encode(list(where)).decode()


def engagement_series(kind: EngagementName | str, channel: Channel | None) -> str:
    return f"g:{kind}:{channel.value if channel else '*'}"


# --- parsing ---------------------------------------------------------------------------------


def parse_rule(raw: Any, path: str = "rule") -> Rule:
    """Validate plain data as a rule; RuleError names the field."""
    leaves = [0]
    rule = _parse(raw, path, 1, leaves)
    return rule


_COMBINATORS = ("all", "any", "not")
_LEAVES = ("attribute", "event", "engagement", "reachable", "prefers", "segment", "created_within")
_ALLOWED = {
    "attribute": {"op", "value"},
    "event": {"where", "count", "within"},
    "engagement": {"channel", "count", "within"},
    "reachable": {"message_type"},
    "prefers": {"message_type"},
    "segment": set(),
    "created_within": set(),
    "all": set(),
    "any": set(),
    "not": set(),
}


def _parse(raw: Any, path: str, depth: int, leaves: list[int]) -> Rule:
    if depth > MAX_DEPTH:
        raise RuleError(path, f"rules nest at most {MAX_DEPTH} deep")
    if not isinstance(raw, dict):
        raise RuleError(path, "a rule is a mapping with one of: " + ", ".join(_COMBINATORS + _LEAVES))
    kinds = [k for k in raw if k in _ALLOWED]
    if len(kinds) != 1:
        unknown = sorted(k for k in raw if not any(k in extra for extra in _ALLOWED.values()))
        if not kinds and unknown:
            raise RuleError(f"{path}.{unknown[0]}", f"unknown rule kind {unknown[0]!r}")
        raise RuleError(path, "a rule has exactly one of: " + ", ".join(_COMBINATORS + _LEAVES))
    kind = kinds[0]
    for key in raw:
        if key != kind and key not in _ALLOWED[kind]:
            raise RuleError(f"{path}.{key}", f"unknown field {key!r} for a {kind} rule")
    value = raw[kind]
    here = f"{path}.{kind}"
    if kind in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise RuleError(here, f"{kind} takes a non-empty list of rules")
        children = tuple(_parse(child, f"{here}[{i}]", depth + 1, leaves) for i, child in enumerate(value))
        return AllRule(children) if kind == "all" else AnyRule(children)
    if kind == "not":
        return NotRule(_parse(value, here, depth + 1, leaves))
    leaves[0] += 1
    if leaves[0] > MAX_LEAVES:
        raise RuleError(path, f"a segment rule has at most {MAX_LEAVES} leaves")
    return _LEAF_PARSERS[kind](raw, path)


def _attribute(raw: dict[str, Any], path: str) -> Rule:
    name = raw["attribute"]
    if not isinstance(name, str) or not (
        name in BUILTIN_ATTRIBUTES or (name.startswith("custom.") and len(name) > len("custom."))
    ):
        raise RuleError(
            f"{path}.attribute",
            "an attribute is one of " + ", ".join(BUILTIN_ATTRIBUTES) + " or custom.<name>",
        )
    op = _enum(AttributeOp, raw.get("op", "eq"), f"{path}.op")
    value = raw.get("value")
    if op is AttributeOp.EXISTS:
        if value is None:
            value = True
        if not isinstance(value, bool):
            raise RuleError(f"{path}.value", "exists takes true or false")
    elif "value" not in raw:
        raise RuleError(f"{path}.value", f"op {op.value} needs a value")
    elif op is AttributeOp.IN:
        if not isinstance(value, list) or not all(_is_scalar(v) for v in value):
            raise RuleError(f"{path}.value", "op in takes a list of values")
        value = tuple(value)
    elif op in (AttributeOp.GT, AttributeOp.GTE, AttributeOp.LT, AttributeOp.LTE):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise RuleError(f"{path}.value", f"op {op.value} compares with a number or a string")
    elif not _is_scalar(value):
        raise RuleError(f"{path}.value", f"op {op.value} takes a single value")
    return AttributeRule(name, op, value)


def _event(raw: dict[str, Any], path: str) -> Rule:
    name = raw["event"]
    if not isinstance(name, str) or not _EVENT_NAME.match(name):
        raise RuleError(f"{path}.event", "an event name is 1-100 characters of A-Z a-z 0-9 _ . : -")
    where = raw.get("where", {})
    if not isinstance(where, dict) or not all(isinstance(k, str) and _is_scalar(v) for k, v in where.items()):
        raise RuleError(f"{path}.where", "where maps property names to single values")
    return EventRule(
        name,
        tuple(sorted(where.items())),
        _count(raw.get("count"), f"{path}.count"),
        _within(raw.get("within"), f"{path}.within"),
    )


def _engagement(raw: dict[str, Any], path: str) -> Rule:
    kind = _enum(EngagementName, raw["engagement"], f"{path}.engagement")
    channel_raw = raw.get("channel", "any")
    channel = None if channel_raw == "any" else _enum(Channel, channel_raw, f"{path}.channel")
    return EngagementRule(
        kind, channel, _count(raw.get("count"), f"{path}.count"), _within(raw.get("within"), f"{path}.within")
    )


def _reachable(raw: dict[str, Any], path: str) -> Rule:
    return ReachableRule(_enum(Channel, raw["reachable"], f"{path}.reachable"), _message_type(raw, path))


def _prefers(raw: dict[str, Any], path: str) -> Rule:
    return PrefersRule(_enum(Channel, raw["prefers"], f"{path}.prefers"), _message_type(raw, path))


def _segment(raw: dict[str, Any], path: str) -> Rule:
    name = raw["segment"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise RuleError(f"{path}.segment", "a segment name is 1-64 characters of a-z 0-9 _ -")
    return SegmentRule(name)


def _created_within(raw: dict[str, Any], path: str) -> Rule:
    within = _within(raw["created_within"], f"{path}.created_within")
    assert within is not None
    return CreatedWithinRule(within)


_LEAF_PARSERS = {
    "attribute": _attribute,
    "event": _event,
    "engagement": _engagement,
    "reachable": _reachable,
    "prefers": _prefers,
    "segment": _segment,
    "created_within": _created_within,
}


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _enum(kind: type[enum.StrEnum], raw: Any, path: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise RuleError(path, f"{raw!r} is not one of: {allowed}") from None


def _message_type(raw: dict[str, Any], path: str) -> str:
    value = raw.get("message_type", "marketing")
    if not isinstance(value, str) or not value:
        raise RuleError(f"{path}.message_type", "message_type is a message type name")
    return value


def _count(raw: Any, path: str) -> CountTest:
    if raw is None:
        return CountTest()
    if isinstance(raw, int) and not isinstance(raw, bool):  # "count: 3" means at least 3
        raw = {"op": "gte", "value": raw}
    if not isinstance(raw, dict) or set(raw) - {"op", "value"}:
        raise RuleError(path, "count is {op, value}, e.g. {op: gte, value: 2}")
    op = _enum(CountOp, raw.get("op", "gte"), f"{path}.op")
    value = raw.get("value", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RuleError(f"{path}.value", "a count is a whole number, 0 or more")
    return CountTest(op, value)


def _within(raw: Any, path: str) -> float | None:
    if raw is None:
        return None
    try:
        seconds = parse_duration(raw).seconds
    except ValueError as exc:
        raise RuleError(path, str(exc)) from None
    if seconds <= 0 or seconds > MAX_WITHIN:
        raise RuleError(path, "a window is more than 0s and at most 400d")
    return seconds


# --- structure ------------------------------------------------------------------------------


def walk(rule: Rule) -> Iterable[Leaf]:
    """Every leaf of ``rule``."""
    if isinstance(rule, AllRule | AnyRule):
        for child in rule.rules:
            yield from walk(child)
    elif isinstance(rule, NotRule):
        yield from walk(rule.rule)
    else:
        yield rule


def referenced_segments(rule: Rule) -> set[str]:
    return {leaf.name for leaf in walk(rule) if isinstance(leaf, SegmentRule)}


def topics(rule: Rule) -> frozenset[str]:
    """What a rule reads, as the change topics the engine raises (``event:<name>``, ``attr``…)."""
    found: set[str] = set()
    for leaf in walk(rule):
        if isinstance(leaf, AttributeRule):
            found.add("attr")
        elif isinstance(leaf, EventRule):
            found.add(f"event:{leaf.name}")
        elif isinstance(leaf, EngagementRule):
            found.add(f"engagement:{leaf.kind.value}")
        elif isinstance(leaf, ReachableRule):
            found.add("reach")
        elif isinstance(leaf, PrefersRule):
            found.add("prefers")
        elif isinstance(leaf, SegmentRule):
            found.add(f"segment:{leaf.name}")
        elif isinstance(leaf, CreatedWithinRule):
            found.add("created")
    return frozenset(found)


def check_references(name: str, rule: Rule, others: Mapping[str, Rule]) -> None:
    """Every referenced segment exists, and none refers back to ``name`` (``segment_cycle``)."""
    for ref in sorted(referenced_segments(rule)):
        if ref != name and ref not in others:
            raise RuleError("rule", f"segment {ref!r} is not defined", "unknown_segment")
    rules = {**others, name: rule}
    seen: set[str] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [
        (ref, (name, ref)) for ref in sorted(referenced_segments(rule))
    ]
    while stack:
        current, trail = stack.pop()
        if current == name:
            raise RuleError("rule", "segment refers to itself: " + " -> ".join(trail), "segment_cycle")
        if current in seen or current not in rules:
            continue
        seen.add(current)
        stack.extend((ref, (*trail, ref)) for ref in sorted(referenced_segments(rules[current])))


def evaluation_order(rules: Mapping[str, Rule]) -> list[str]:
    """Segment names so that each comes after the segments it refers to (cycles were refused)."""
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str, visiting: frozenset[str]) -> None:
        if name in placed or name not in rules or name in visiting:
            return
        for ref in sorted(referenced_segments(rules[name])):
            place(ref, visiting | {name})
        placed.add(name)
        order.append(name)

    for name in sorted(rules):
        place(name, frozenset())
    return order


# --- facts and evaluation -------------------------------------------------------------------


class Series(msgspec.Struct, array_like=True):
    """Occurrences of one thing (an event, an engagement kind on a channel), compactly.

    ``recent`` keeps the newest ``RECENT`` times exactly; ``days`` counts every occurrence per day
    (UTC day index) for ``MAX_WITHIN``; ``total`` counts them all, ever.
    """

    recent: list[float] = msgspec.field(default_factory=list)
    days: dict[int, int] = msgspec.field(default_factory=dict)
    total: int = 0

    def add(self, at: float, now: float) -> None:
        """CountTest one occurrence at ``at`` (never after ``now``), pruning what no window reaches."""
        at = min(at, now)
        self.total += 1
        day = int(at // DAY)
        self.days[day] = self.days.get(day, 0) + 1
        if len(self.recent) < RECENT or at > self.recent[0]:
            self.recent.append(at)
            self.recent.sort()
            del self.recent[:-RECENT]
        oldest = int((now - MAX_WITHIN) // DAY)
        for stale in [d for d in self.days if d < oldest]:
            del self.days[stale]

    def within(self, window: float | None, now: float) -> tuple[int, float | None, tuple[float, ...]]:
        """(count in the window, the next time that count changes by time alone, exact times).

        The exact times (ascending) are given when every counted occurrence is known exactly.
        """
        if window is None:
            return self.total, None, ()
        start = now - window
        inside = tuple(t for t in self.recent if t > start)
        if self.total == len(self.recent) or (self.recent and self.recent[0] <= start):
            return len(inside), (inside[0] + window if inside else None), inside
        # Older occurrences than ``recent`` fall in the window: count them by day (approximate
        # by at most a day), and look again when the oldest counted day slides out.
        first_day = int(self.recent[0] // DAY) if self.recent else None
        count = len(inside)
        next_change: float | None = inside[0] + window if inside else None
        for day, n in self.days.items():
            day_end = (day + 1) * DAY
            if day_end <= start or (first_day is not None and day > first_day):
                continue
            if day == first_day:
                n -= sum(1 for t in self.recent if int(t // DAY) == day)
            if n <= 0:
                continue
            count += n
            change = day_end + window
            next_change = change if next_change is None else min(next_change, change)
        return count, next_change, ()


@dataclass(slots=True)
class Subject:
    """What rules are evaluated against: one customer's compact facts."""

    attributes: Mapping[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    series: Mapping[str, Series] = field(default_factory=dict)
    preferences: Preferences | None = None
    addresses: frozenset[Channel] = frozenset()
    members: frozenset[str] = frozenset()  # segments already decided for this customer


class Verdict(msgspec.Struct, frozen=True):
    """Whether the customer matches, and when the answer could next change by time alone."""

    matches: bool
    next_check: float | None = None


def evaluate(rule: Rule, subject: Subject, now: float) -> Verdict:
    """Evaluate ``rule`` for ``subject`` at ``now``."""
    if isinstance(rule, AllRule | AnyRule):
        verdicts = [evaluate(child, subject, now) for child in rule.rules]
        matches = (
            all(v.matches for v in verdicts)
            if isinstance(rule, AllRule)
            else any(v.matches for v in verdicts)
        )
        return Verdict(matches, _earliest(v.next_check for v in verdicts))
    if isinstance(rule, NotRule):
        inner = evaluate(rule.rule, subject, now)
        return Verdict(not inner.matches, inner.next_check)
    if isinstance(rule, AttributeRule):
        return Verdict(_attribute_holds(rule, subject.attributes))
    if isinstance(rule, EventRule | EngagementRule):
        return _counted(subject.series.get(rule.series), rule.count, rule.within, now)
    if isinstance(rule, ReachableRule):
        allowed = subject.preferences is None or subject.preferences.allows(rule.channel, rule.message_type)
        return Verdict(rule.channel in subject.addresses and allowed)
    if isinstance(rule, PrefersRule):
        order = subject.preferences.preferred_order(rule.message_type) if subject.preferences else ()
        return Verdict(bool(order) and order[0] is rule.channel)
    if isinstance(rule, SegmentRule):
        return Verdict(rule.name in subject.members)
    if subject.created_at is None:
        return Verdict(False)
    if now - subject.created_at < rule.within:
        return Verdict(True, subject.created_at + rule.within)
    return Verdict(False)


def _counted(series: Series | None, count: CountTest, window: float | None, now: float) -> Verdict:
    if series is None:
        return Verdict(count.holds(0))
    found, next_change, exact = series.within(window, now)
    matches = count.holds(found)
    if window is None or next_change is None:
        return Verdict(matches)
    if exact:
        # The window only loses occurrences: the answer flips when the k-th oldest slides out,
        # for the first k that changes it (or never).
        for k, at in enumerate(exact, start=1):
            if count.holds(found - k) != matches:
                return Verdict(matches, at + window)
        return Verdict(matches)
    return Verdict(matches, next_change)


def _earliest(times: Iterable[float | None]) -> float | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def _compare_counts(op: CountOp, left: int, right: int) -> bool:
    if op is CountOp.EQ:
        return left == right
    if op is CountOp.NE:
        return left != right
    if op is CountOp.GT:
        return left > right
    if op is CountOp.GTE:
        return left >= right
    if op is CountOp.LT:
        return left < right
    return left <= right


def _attribute_holds(rule: AttributeRule, attributes: Mapping[str, Any]) -> bool:
    present = rule.path in attributes and attributes[rule.path] is not None
    if rule.op is AttributeOp.EXISTS:
        return present is rule.value
    value = attributes.get(rule.path)
    if rule.op is AttributeOp.NE:
        return value != rule.value
    if not present:
        return False
    if rule.op is AttributeOp.EQ:
        return bool(value == rule.value)
    if rule.op is AttributeOp.IN:
        return value in rule.value
    if rule.op is AttributeOp.CONTAINS:
        if isinstance(value, str):
            return isinstance(rule.value, str) and rule.value in value
        return isinstance(value, list | tuple) and rule.value in value
    # Ordering: numbers with numbers, strings with strings; anything else never matches.
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric != isinstance(rule.value, int | float) or (not numeric and not isinstance(value, str)):
        return False
    if rule.op is AttributeOp.GT:
        return bool(value > rule.value)
    if rule.op is AttributeOp.GTE:
        return bool(value >= rule.value)
    if rule.op is AttributeOp.LT:
        return bool(value < rule.value)
    return bool(value <= rule.value)
