"""The segment rule language: parsing that names the field, and pure evaluation with time flips."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.models import Channel
from conversations.preferences import ConsentChange, ConsentState, Preferences, TypePreference
from conversations.segments.rules import (
    DAY,
    RECENT,
    AllRule,
    RuleError,
    Series,
    Subject,
    check_references,
    engagement_series,
    evaluate,
    evaluation_order,
    event_series,
    parse_rule,
    topics,
)

NOW = 1_000 * DAY


def check(raw: dict[str, Any], subject: Subject, now: float = NOW) -> tuple[bool, float | None]:
    verdict = evaluate(parse_rule(raw), subject, now)
    return verdict.matches, verdict.next_check


def series(*times: float) -> Series:
    found = Series()
    for at in times:
        found.add(at, NOW)
    return found


# --- attribute -------------------------------------------------------------------------------

STAGE = {"lifecycle_stage": "paying", "custom.score": 7, "custom.tags": ["a", "b"], "name": "Ada Lovelace"}


@pytest.mark.parametrize(
    "leaf, expected",
    [
        ({"attribute": "lifecycle_stage", "op": "eq", "value": "paying"}, True),
        ({"attribute": "lifecycle_stage", "value": "new"}, False),  # op defaults to eq
        ({"attribute": "lifecycle_stage", "op": "ne", "value": "new"}, True),
        ({"attribute": "locale", "op": "ne", "value": "fr"}, True),  # missing is "not equal"
        ({"attribute": "lifecycle_stage", "op": "in", "value": ["paying", "expert"]}, True),
        ({"attribute": "lifecycle_stage", "op": "in", "value": ["new"]}, False),
        ({"attribute": "custom.score", "op": "gt", "value": 6}, True),
        ({"attribute": "custom.score", "op": "gt", "value": 7}, False),
        ({"attribute": "custom.score", "op": "gte", "value": 7}, True),
        ({"attribute": "custom.score", "op": "lt", "value": 7}, False),
        ({"attribute": "custom.score", "op": "lte", "value": 7}, True),
        ({"attribute": "custom.score", "op": "gt", "value": "6"}, False),  # no number/string mixing
        ({"attribute": "custom.score", "op": "exists"}, True),
        ({"attribute": "custom.missing", "op": "exists"}, False),
        ({"attribute": "custom.missing", "op": "exists", "value": False}, True),
        ({"attribute": "name", "op": "contains", "value": "Love"}, True),
        ({"attribute": "custom.tags", "op": "contains", "value": "b"}, True),
        ({"attribute": "custom.tags", "op": "contains", "value": "z"}, False),
        ({"attribute": "custom.missing", "op": "eq", "value": None}, False),
    ],
)
def test_attribute_leaf(leaf: dict[str, Any], expected: bool) -> None:
    assert check(leaf, Subject(attributes=STAGE)) == (expected, None)


# --- event -----------------------------------------------------------------------------------


def test_event_leaf_counts_in_its_window_and_flips_when_the_last_one_slides_out() -> None:
    facts = {event_series("purchase_completed"): series(NOW - 10 * DAY, NOW - 2 * DAY)}
    rule = {"event": "purchase_completed", "within": "30d"}
    # Two in the window; at least one: still true after the older slides out, false after the newer.
    assert check(rule, Subject(series=facts)) == (True, NOW - 2 * DAY + 30 * DAY)
    assert check({**rule, "count": {"op": "gte", "value": 2}}, Subject(series=facts)) == (
        True,
        NOW - 10 * DAY + 30 * DAY,
    )
    later = NOW + 28 * DAY + 1
    assert check(rule, Subject(series=facts), later) == (False, None)
    assert check({"event": "purchase_completed"}, Subject(series=facts), later) == (True, None)  # ever
    assert check({"event": "other"}, Subject(series=facts)) == (False, None)


def test_event_count_ops() -> None:
    facts = {event_series("login"): series(NOW - 3, NOW - 2, NOW - 1)}
    for op, value, expected in [
        ("eq", 3, True),
        ("ne", 3, False),
        ("gt", 2, True),
        ("gte", 4, False),
        ("lt", 4, True),
        ("lte", 2, False),
    ]:
        got, _ = check({"event": "login", "count": {"op": op, "value": value}}, Subject(series=facts))
        assert got is expected, (op, value)
    assert check({"event": "login", "count": 3}, Subject(series=facts))[0] is True
    assert check({"event": "login", "count": {"op": "eq", "value": 0}}, Subject())[0] is True


def test_a_less_than_count_becomes_true_by_time_alone() -> None:
    facts = {event_series("login"): series(NOW - 5 * DAY, NOW - 1 * DAY)}
    rule = {"event": "login", "count": {"op": "lt", "value": 2}, "within": "7d"}
    assert check(rule, Subject(series=facts)) == (False, NOW - 5 * DAY + 7 * DAY)


def test_event_property_filter_reads_its_own_series() -> None:
    rule = parse_rule({"event": "purchase_completed", "where": {"plan": "pro"}})
    assert isinstance(rule, type(rule)) and rule.series == event_series(
        "purchase_completed", (("plan", "pro"),)
    )
    subject = Subject(series={rule.series: series(NOW - 1)})
    assert evaluate(rule, subject, NOW).matches
    assert not evaluate(
        parse_rule({"event": "purchase_completed", "where": {"plan": "free"}}), subject, NOW
    ).matches


def test_beyond_the_exact_times_days_count_and_the_answer_is_checked_again_at_a_day_edge() -> None:
    times = [NOW - 20 * DAY + i for i in range(5)] + [NOW - DAY + i for i in range(RECENT)]
    facts = {event_series("view"): series(*times)}
    rule = {"event": "view", "count": {"op": "gte", "value": RECENT + 5}, "within": "30d"}
    matches, next_check = check(rule, Subject(series=facts))
    assert matches and next_check is not None
    assert NOW - 20 * DAY + 30 * DAY <= next_check <= NOW - 19 * DAY + 30 * DAY


# --- engagement ------------------------------------------------------------------------------


def test_engagement_leaf_on_a_channel_or_any() -> None:
    facts = {
        engagement_series("opened", Channel.EMAIL): series(NOW - 3 * DAY),
        engagement_series("opened", None): series(NOW - 3 * DAY),
    }
    subject = Subject(series=facts)
    assert check({"engagement": "opened", "channel": "email", "within": "21d"}, subject) == (
        True,
        NOW + 18 * DAY,
    )
    assert check({"engagement": "opened", "channel": "sms", "within": "21d"}, subject) == (False, None)
    assert check({"engagement": "opened", "within": "21d"}, subject)[0] is True
    assert check({"engagement": "clicked"}, subject) == (False, None)


def test_not_opened_in_three_weeks_flips_true_when_the_last_open_is_21_days_old() -> None:
    facts = {engagement_series("opened", Channel.EMAIL): series(NOW - 3 * DAY)}
    rule = {"not": {"engagement": "opened", "channel": "email", "within": "21d"}}
    assert check(rule, Subject(series=facts)) == (False, NOW + 18 * DAY)
    assert check(rule, Subject(series=facts), NOW + 18 * DAY) == (True, None)


# --- reachable, prefers, segment, created_within ----------------------------------------------


def test_reachable_needs_an_address_and_consent() -> None:
    rule = {"reachable": "sms", "message_type": "marketing"}
    assert check(rule, Subject(addresses=frozenset({Channel.SMS}))) == (True, None)
    assert check(rule, Subject(addresses=frozenset({Channel.EMAIL}))) == (False, None)
    stopped = Preferences()
    stopped.apply(ConsentChange(Channel.SMS, ConsentState.OPTED_OUT, "sms_keyword:STOP", 1.0))
    assert check(rule, Subject(addresses=frozenset({Channel.SMS}), preferences=stopped)) == (False, None)
    assert check(
        {**rule, "message_type": "transactional"},
        Subject(addresses=frozenset({Channel.SMS}), preferences=stopped),
    )[0]


def test_prefers_is_the_first_channel_of_the_type() -> None:
    prefs = Preferences(by_type={"marketing": TypePreference(order=(Channel.SMS, Channel.EMAIL))})
    assert check({"prefers": "sms", "message_type": "marketing"}, Subject(preferences=prefs))[0]
    assert not check({"prefers": "email", "message_type": "marketing"}, Subject(preferences=prefs))[0]
    assert not check({"prefers": "sms", "message_type": "service"}, Subject(preferences=prefs))[0]
    assert not check({"prefers": "sms"}, Subject())[0]


def test_segment_leaf_reads_earlier_decisions() -> None:
    assert check({"segment": "paying"}, Subject(members=frozenset({"paying"}))) == (True, None)
    assert check({"segment": "paying"}, Subject()) == (False, None)


def test_created_within_runs_out() -> None:
    assert check({"created_within": "7d"}, Subject(created_at=NOW - DAY)) == (True, NOW + 6 * DAY)
    assert check({"created_within": "7d"}, Subject(created_at=NOW - 8 * DAY)) == (False, None)
    assert check({"created_within": "7d"}, Subject()) == (False, None)


# --- combinators -----------------------------------------------------------------------------


def test_all_any_not_and_the_earliest_flip() -> None:
    subject = Subject(attributes={"lifecycle_stage": "paying"}, created_at=NOW - DAY)
    yes = {"attribute": "lifecycle_stage", "value": "paying"}
    no = {"attribute": "lifecycle_stage", "value": "new"}
    soon = {"created_within": "2d"}
    assert check({"all": [yes, soon]}, subject) == (True, NOW + DAY)
    assert check({"all": [yes, no]}, subject) == (False, None)
    assert check({"any": [no, soon]}, subject) == (True, NOW + DAY)
    assert check({"any": [no, no]}, subject) == (False, None)
    assert check({"not": yes}, subject) == (False, None)
    assert check({"not": {"not": yes}}, subject) == (True, None)


def test_the_issue_example_parses_and_evaluates() -> None:
    rule = {
        "all": [
            {"attribute": "lifecycle_stage", "op": "in", "value": ["paying", "expert"]},
            {"event": "purchase_completed", "count": {"op": "gte", "value": 1}, "within": "30d"},
            {"not": {"engagement": "opened", "channel": "email", "within": "21d"}},
            {"reachable": "sms", "message_type": "marketing"},
        ]
    }
    parsed = parse_rule(rule)
    assert isinstance(parsed, AllRule)
    assert topics(parsed) == {"attr", "event:purchase_completed", "engagement:opened", "reach"}
    subject = Subject(
        attributes={"lifecycle_stage": "expert"},
        series={event_series("purchase_completed"): series(NOW - DAY)},
        addresses=frozenset({Channel.SMS}),
    )
    assert evaluate(parsed, subject, NOW).matches


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"frobnicate": 1}, "rule.frobnicate"),
        ([], "rule"),
        ({}, "rule"),
        ({"attribute": "x", "op": "eq", "value": 1}, "rule.attribute"),
        ({"attribute": "custom.x", "op": "like", "value": 1}, "rule.op"),
        ({"attribute": "custom.x", "op": "eq"}, "rule.value"),
        ({"attribute": "custom.x", "op": "in", "value": 3}, "rule.value"),
        ({"attribute": "custom.x", "op": "gt", "value": [1]}, "rule.value"),
        ({"event": "a b"}, "rule.event"),
        ({"event": "x", "within": "soon"}, "rule.within"),
        ({"event": "x", "within": "0s"}, "rule.within"),
        ({"event": "x", "count": {"op": "about", "value": 1}}, "rule.count.op"),
        ({"event": "x", "count": {"value": -1}}, "rule.count.value"),
        ({"event": "x", "where": {"a": [1]}}, "rule.where"),
        ({"event": "x", "channel": "sms"}, "rule.channel"),
        ({"engagement": "liked"}, "rule.engagement"),
        ({"engagement": "opened", "channel": "fax"}, "rule.channel"),
        ({"reachable": "pigeon"}, "rule.reachable"),
        ({"prefers": "sms", "message_type": ""}, "rule.message_type"),
        ({"segment": "Bad Name"}, "rule.segment"),
        ({"created_within": "forever"}, "rule.created_within"),
        ({"all": []}, "rule.all"),
        ({"all": [{"event": "x"}, {"any": [{"nope": 1}]}]}, "rule.all[1].any[0].nope"),
        ({"not": {"event": "x", "within": "2x"}}, "rule.not.within"),
        ({"event": "x", "segment": "y"}, "rule"),
    ],
)
def test_a_bad_rule_names_its_field(raw: Any, field: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(raw)
    assert caught.value.field == field, caught.value.message


def test_depth_and_leaf_limits() -> None:
    rule: dict[str, Any] = {"event": "x"}
    for _ in range(7):
        rule = {"not": rule}
    parse_rule(rule)  # 8 deep
    with pytest.raises(RuleError, match="8 deep"):
        parse_rule({"not": rule})
    parse_rule({"any": [{"event": f"e{i}"} for i in range(64)]})
    with pytest.raises(RuleError, match="64 leaves"):
        parse_rule({"any": [{"event": f"e{i}"} for i in range(65)]})


def test_segment_references_must_exist_and_never_loop() -> None:
    a = parse_rule({"segment": "b"})
    b = parse_rule({"any": [{"segment": "c"}, {"event": "x"}]})
    c = parse_rule({"event": "y"})
    check_references("a", a, {"b": b, "c": c})
    with pytest.raises(RuleError) as missing:
        check_references("a", a, {})
    assert missing.value.code == "unknown_segment"
    looping_c = parse_rule({"segment": "a"})
    with pytest.raises(RuleError) as cycle:
        check_references("a", a, {"b": b, "c": looping_c})
    assert cycle.value.code == "segment_cycle" and "a -> b -> c -> a" in cycle.value.message
    with pytest.raises(RuleError) as itself:
        check_references("a", parse_rule({"segment": "a"}), {})
    assert itself.value.code == "segment_cycle"
    assert evaluation_order({"a": a, "b": b, "c": c}) == ["c", "b", "a"]
