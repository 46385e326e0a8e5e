"""Which segments a customer is in: the pure decision over their compact facts.

``SegmentFacts`` is one customer's stored record (one blob per customer, written by their home
shard's batch): event and engagement series, the memberships they hold (with the epoch of the
segment's life they were decided in), when each time-based segment must be looked at again,
and a digest of the profile facts rules read (so a change made outside the batch — a profile
upsert — is noticed at the customer's next entry). ``decide`` takes the defined segments,
those facts, what changed, and ``now``, and returns the memberships entered and left.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from conversations.models import Channel
from conversations.preferences import Preferences
from conversations.segments.registry import SegmentState
from conversations.segments.rules import (
    EventRule,
    Series,
    Subject,
    engagement_series,
    evaluate,
    evaluation_order,
    event_series,
    referenced_segments,
    topics,
    walk,
)

# Topics raised when the customer's profile facts changed (see ``profile_digest``).
PROFILE_TOPICS = frozenset({"attr", "reach", "prefers", "created"})


class Membership(msgspec.Struct, array_like=True, frozen=True):
    entered_at: float
    epoch: int


class SegmentFacts(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One customer's compact segment facts (stored as msgpack)."""

    series: dict[str, Series] = msgspec.field(default_factory=dict)
    members: dict[str, Membership] = msgspec.field(default_factory=dict)
    checks: dict[str, float] = msgspec.field(default_factory=dict)  # segment -> next time-based look
    timer_due: float | None = None  # the customer's segment timer, as scheduled
    profile: str = ""  # digest of the profile facts last evaluated

    def record(self, series: str, at: float, now: float) -> None:
        self.series.setdefault(series, Series()).add(at, now)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(SegmentFacts).decode


def encode_facts(facts: SegmentFacts) -> bytes:
    return _encode(facts)


def decode_facts(blob: bytes | None) -> SegmentFacts:
    return _decode(blob) if blob else SegmentFacts()


def timer_id(customer_id: str) -> str:
    """The customer's one segment timer on its shard (rescheduling replaces it)."""
    return f"segment:{customer_id}"


def profile_digest(subject: Subject) -> str:
    """A short stable digest of what attribute, reachable, prefers and created leaves read."""
    blob = msgspec.msgpack.encode(
        [
            sorted((k, repr(v)) for k, v in subject.attributes.items()),
            subject.created_at,
            sorted(c.value for c in subject.addresses),
            subject.preferences or Preferences(),
        ]
    )
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def engagement_keys(kind: str, channel: Channel | None) -> list[str]:
    """The series an engagement updates: its channel's and the any-channel one."""
    keys = [engagement_series(kind, None)]
    if channel is not None:
        keys.append(engagement_series(kind, channel))
    return keys


@dataclass(frozen=True, slots=True)
class Catalog:
    """The defined segments, indexed for the engine: what each reads, in evaluation order."""

    segments: Mapping[str, SegmentState]
    order: tuple[str, ...]
    reads: Mapping[str, frozenset[str]]  # segment -> topics it (and the segments it uses) read
    uses: Mapping[str, frozenset[str]]  # segment -> segments it refers to, transitively
    filtered: Mapping[str, tuple[tuple[tuple[str, object], ...], ...]]  # event -> property filters

    @staticmethod
    def of(segments: Mapping[str, SegmentState]) -> Catalog:
        rules = {name: state.rule for name, state in segments.items()}
        order = tuple(evaluation_order(rules))
        reads: dict[str, frozenset[str]] = {}
        uses: dict[str, frozenset[str]] = {}
        for name in order:  # referred segments come first, so their closures are ready
            refs = {r for r in referenced_segments(rules[name]) if r in rules}
            uses[name] = frozenset(refs.union(*(uses[r] for r in refs)))
            reads[name] = topics(rules[name]).union(*(reads[r] for r in refs))
        filtered: dict[str, set[tuple[tuple[str, object], ...]]] = {}
        for rule in rules.values():
            for leaf in walk(rule):
                if isinstance(leaf, EventRule) and leaf.where:
                    filtered.setdefault(leaf.name, set()).add(leaf.where)
        return Catalog(
            segments,
            order,
            reads,
            uses,
            {name: tuple(sorted(found, key=repr)) for name, found in filtered.items()},
        )

    def event_keys(self, name: str, properties: Mapping[str, object]) -> list[str]:
        """The series an event updates: its name's, and each defined property filter it matches."""
        keys = [event_series(name)]
        for where in self.filtered.get(name, ()):
            if all(key in properties and properties[key] == value for key, value in where):
                keys.append(event_series(name, where))  # type: ignore[arg-type]
        return keys


@dataclass(slots=True)
class Decision:
    """What changed for one customer: memberships entered and left, and the next timer."""

    entered: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    timer_due: float | None = None
    timer_changed: bool = False


def decide(
    catalog: Catalog,
    facts: SegmentFacts,
    subject: Subject,
    changed: Iterable[str],
    forced: Iterable[str],
    now: float,
) -> Decision:
    """Re-evaluate the segments that read a changed topic (or are forced, or use a forced one).

    Updates ``facts`` (memberships, checks, timer) in place and returns what changed.
    """
    decision = Decision()
    # Memberships from a deleted segment, or from an earlier life of one, no longer count.
    for name, held in list(facts.members.items()):
        state = catalog.segments.get(name)
        if state is None or state.epoch != held.epoch:
            del facts.members[name]
    for name in [n for n in facts.checks if n not in catalog.segments]:
        del facts.checks[name]
    topics_changed = set(changed)
    digest = profile_digest(subject)
    if digest != facts.profile:
        topics_changed |= PROFILE_TOPICS
        facts.profile = digest
    forced_names = set(forced) | {name for name, at in facts.checks.items() if at <= now}
    members = set(facts.members)
    for name in catalog.order:
        if not (
            catalog.reads[name] & topics_changed
            or name in forced_names
            or catalog.uses[name] & forced_names
            or (catalog.uses[name] & (set(decision.entered) | set(decision.left)))
        ):
            continue
        state = catalog.segments[name]
        subject.members = frozenset(members)
        verdict = evaluate(state.rule, subject, now)
        if verdict.next_check is not None:
            facts.checks[name] = verdict.next_check
        else:
            facts.checks.pop(name, None)
        if verdict.matches and name not in members:
            members.add(name)
            facts.members[name] = Membership(now, state.epoch)
            decision.entered.append(name)
        elif not verdict.matches and name in members:
            members.discard(name)
            del facts.members[name]
            decision.left.append(name)
    due = min(facts.checks.values()) if facts.checks else None
    if due != facts.timer_due:
        facts.timer_due = due
        decision.timer_changed = True
    decision.timer_due = due
    return decision
