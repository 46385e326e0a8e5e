"""Segments when two customers merge: the loser leaves every segment, the winner is re-evaluated.

``leave_all`` joins the hand-over on the loser's shard (its members and counts live there);
``fold_into`` joins the merge on the winner's shard: the loser's series are added to the
winner's, the loser's facts are dropped, and a ``SegmentTimer`` with ``everything`` makes the
winner's next batch evaluate every segment over the merged facts.
"""

from __future__ import annotations

import heapq
from typing import Any

from conversations import stream_entries, timers
from conversations.models import Forwarded, SegmentTimer
from conversations.segments import membership
from conversations.segments.engine import decode_facts, encode_facts, timer_id
from conversations.segments.rules import RECENT, Series
from conversations.store import Keys


def leave_all(pipe: Any, keys: Keys, shard: int, loser: str, blob: bytes | None) -> None:
    """Queue: the loser leaves every segment it is in on ``shard``; its series stay for the fold."""
    facts = decode_facts(blob)
    if not facts.members and facts.timer_due is None:
        return
    for name in sorted(facts.members):
        membership.move(pipe, keys, shard, name, loser, -1)
    timers.cancel(pipe, keys, shard, timer_id(loser))
    facts.members, facts.checks, facts.timer_due = {}, {}, None
    pipe.set(keys.segment_facts(loser), encode_facts(facts))


def merged_series(first: Series, second: Series) -> Series:
    """Both customers' occurrences as one series."""
    days = dict(first.days)
    for day, count in second.days.items():
        days[day] = days.get(day, 0) + count
    recent = list(heapq.merge(first.recent, second.recent))[-RECENT:]
    return Series(recent, days, first.total + second.total)


def fold_into(
    pipe: Any,
    keys: Keys,
    shard: int,
    winner: str,
    loser: str,
    winner_blob: bytes | None,
    loser_blob: bytes | None,
    now: float,
) -> None:
    """Queue: the winner's facts take the loser's series; every segment is evaluated next batch."""
    facts = decode_facts(winner_blob)
    lost = decode_facts(loser_blob)
    for key, series in lost.series.items():
        mine = facts.series.get(key)
        facts.series[key] = series if mine is None else merged_series(mine, series)
    facts.profile = ""  # the profile changed too: attribute and consent segments look again
    pipe.set(keys.segment_facts(winner), encode_facts(facts))
    pipe.delete(keys.segment_facts(loser))
    stream_entries.append(
        pipe, keys.ingest(shard), Forwarded(winner, SegmentTimer(winner, now, everything=True))
    )
