"""The routing machine, one test per transition: pure, no Redis (like the journey machine's)."""

from __future__ import annotations

from conversations.models import (
    AttemptOutcome,
    Channel,
    DecisionOutcome,
    Identifier,
    IdentifierKind,
    MessageStatus,
    RouteMode,
    RouteRequest,
    RouteStep,
    Routing,
    RoutingDecision,
    RoutingEvent,
    RoutingState,
    RoutingTimerKind,
    SkippedChannel,
    SkipReason,
    StatusChange,
)
from conversations.routing.machine import (
    AttemptChanged,
    AttemptTimedOut,
    CancelRoutingTimer,
    CountSend,
    Decided,
    FollowUpDue,
    Log,
    MarkUnreachable,
    Mirror,
    ScheduleRoutingTimer,
    SetStatus,
    StartAttempt,
    step,
)

NOW = 1_750_000_000.0
REQUEST = RouteRequest(
    message_id="msg_1",
    message_type="service",
    body="Your order shipped",
    recipient=Identifier(IdentifierKind.PHONE, "+14155550100"),
)


def _step(channel: Channel, success: MessageStatus = MessageStatus.DELIVERED, **kw) -> RouteStep:
    return RouteStep(channel=channel, address="+14155550100", success=success, timeout=60.0, **kw)


def _decision(
    *steps: RouteStep, outcome=DecisionOutcome.SEND, mode=RouteMode.FALLBACK, **kw
) -> RoutingDecision:
    return RoutingDecision(
        message_type="service",
        outcome=outcome,
        chosen=steps[0].channel if steps and outcome is DecisionOutcome.SEND else None,
        chain=steps,
        mode=mode,
        **kw,
    )


def _started(*steps: RouteStep, mode=RouteMode.FALLBACK) -> Routing:
    """A routing whose decision was applied (first step, or every undelayed step, under way)."""
    routing = Routing(request=REQUEST, decision=_decision(*steps, mode=mode))
    step(routing, MessageStatus.ACCEPTED, Decided(routing.decision), NOW)
    return routing


def _kinds(effects) -> list[str]:
    return [type(e).__name__ for e in effects]


def _logs(effects) -> list[RoutingEvent]:
    return [e.event for e in effects if isinstance(e, Log)]


def _failed(attempt: str, code: str = "", at: float = NOW + 1, **kw) -> AttemptChanged:
    change = StatusChange(MessageStatus.FAILED, at, "failed", code)
    return AttemptChanged(attempt, change, MessageStatus.FAILED, code, **kw)


def _reached(attempt: str, status: MessageStatus, at: float = NOW + 1) -> AttemptChanged:
    return AttemptChanged(attempt, StatusChange(status, at, status.value), status)


# --- Decided -----------------------------------------------------------------------------


def test_a_send_decision_starts_the_first_step_with_its_timeout() -> None:
    routing = Routing(request=REQUEST, decision=_decision(_step(Channel.WHATSAPP), _step(Channel.SMS)))
    effects = step(routing, MessageStatus.ACCEPTED, Decided(routing.decision, capped=True), NOW)
    assert routing.state is RoutingState.ACTIVE and routing.next_step == 1
    assert [a.id for a in routing.attempts] == ["msg_1-1"]
    assert _kinds(effects) == ["Log", "CountSend", "StartAttempt", "Log", "ScheduleRoutingTimer"]
    assert _logs(effects) == [RoutingEvent.DECIDED, RoutingEvent.ATTEMPT]
    timer = effects[-1]
    assert isinstance(timer, ScheduleRoutingTimer)
    assert (timer.kind, timer.due, timer.attempt_id) == (RoutingTimerKind.TIMEOUT, NOW + 60, "msg_1-1")


def test_mode_all_starts_undelayed_steps_and_schedules_the_delayed_ones() -> None:
    decision = _decision(_step(Channel.VOICE), _step(Channel.SMS, delay=30.0), mode=RouteMode.ALL)
    routing = Routing(request=REQUEST, decision=decision)
    effects = step(routing, MessageStatus.ACCEPTED, Decided(decision), NOW)
    starts = [e for e in effects if isinstance(e, StartAttempt)]
    timers = [e for e in effects if isinstance(e, ScheduleRoutingTimer)]
    assert [s.step.channel for s in starts] == [Channel.VOICE]
    assert [(t.kind, t.step, t.due) for t in timers] == [(RoutingTimerKind.FOLLOW_UP, 1, NOW + 30)]


def test_a_defer_decision_waits_on_a_timer() -> None:
    decision = _decision(
        _step(Channel.SMS),
        outcome=DecisionOutcome.DEFER,
        hold=SkipReason.QUIET_HOURS,
        deferred_until=NOW + 3600,
    )
    routing = Routing(request=REQUEST, decision=decision)
    effects = step(routing, MessageStatus.ACCEPTED, Decided(decision), NOW)
    assert routing.state is RoutingState.DEFERRED and routing.attempts == []
    assert _logs(effects) == [RoutingEvent.DEFERRED]
    assert ScheduleRoutingTimer(RoutingTimerKind.DEFERRED, NOW + 3600) in effects


def test_a_refuse_decision_fails_the_message_with_the_reason() -> None:
    skipped = (SkippedChannel(Channel.SMS, SkipReason.OPTED_OUT, "sms_keyword:STOP at 1"),)
    decision = _decision(outcome=DecisionOutcome.REFUSE, skipped=skipped)
    routing = Routing(request=REQUEST, decision=decision)
    effects = step(routing, MessageStatus.ACCEPTED, Decided(decision), NOW)
    assert routing.state is RoutingState.REFUSED
    status = next(e for e in effects if isinstance(e, SetStatus))
    assert (status.status, status.error_code, status.history) == (MessageStatus.FAILED, "opted_out", True)
    assert "sms: opted_out" in (status.error_message or "")


def test_a_deferred_message_decided_again_starts() -> None:
    decision = _decision(_step(Channel.SMS), outcome=DecisionOutcome.DEFER, deferred_until=NOW + 10)
    routing = Routing(request=REQUEST, decision=decision)
    step(routing, MessageStatus.ACCEPTED, Decided(decision), NOW)
    effects = step(routing, MessageStatus.ACCEPTED, Decided(_decision(_step(Channel.SMS))), NOW + 10)
    assert routing.state is RoutingState.ACTIVE and len(routing.attempts) == 1
    assert RoutingEvent.ATTEMPT in _logs(effects)


def test_a_message_under_way_is_not_decided_again() -> None:
    routing = _started(_step(Channel.SMS))
    assert step(routing, MessageStatus.ACCEPTED, Decided(routing.decision), NOW + 5) == []
    assert len(routing.attempts) == 1


# --- AttemptChanged ----------------------------------------------------------------------


def test_success_ends_the_chain_and_cancels_every_timeout() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS))
    effects = step(routing, MessageStatus.ACCEPTED, _reached("msg_1-1", MessageStatus.DELIVERED), NOW + 2)
    assert routing.state is RoutingState.SUCCEEDED
    assert routing.attempts[0].outcome is AttemptOutcome.SUCCEEDED
    assert CancelRoutingTimer(RoutingTimerKind.TIMEOUT, "msg_1-1") in effects
    assert Mirror("msg_1-1") in effects and SetStatus(MessageStatus.DELIVERED, "") in effects
    assert _logs(effects) == [RoutingEvent.SUCCEEDED]


def test_progress_short_of_success_is_mirrored_only() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS))
    effects = step(routing, MessageStatus.ACCEPTED, _reached("msg_1-1", MessageStatus.SENT), NOW + 1)
    assert routing.state is RoutingState.ACTIVE
    assert effects == [Mirror("msg_1-1"), SetStatus(MessageStatus.SENT)]


def test_a_failure_falls_back_to_the_next_step() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS))
    effects = step(routing, MessageStatus.ACCEPTED, _failed("msg_1-1", "131047"), NOW + 1)
    assert routing.attempts[0].outcome is AttemptOutcome.FAILED
    assert _logs(effects) == [RoutingEvent.FALLBACK, RoutingEvent.ATTEMPT]
    start = next(e for e in effects if isinstance(e, StartAttempt))
    assert (start.attempt.id, start.step.channel, start.after, start.after_reason) == (
        "msg_1-2",
        Channel.SMS,
        Channel.WHATSAPP,
        "131047",
    )
    assert CancelRoutingTimer(RoutingTimerKind.TIMEOUT, "msg_1-1") in effects


def test_an_unreachable_code_is_remembered() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS))
    effects = step(routing, MessageStatus.ACCEPTED, _failed("msg_1-1", "131026", unreachable=True), NOW + 1)
    assert MarkUnreachable(Channel.WHATSAPP, NOW + 1) in effects


def test_a_failure_of_the_last_step_exhausts_the_chain() -> None:
    routing = _started(_step(Channel.SMS, MessageStatus.SENT))
    effects = step(routing, MessageStatus.ACCEPTED, _failed("msg_1-1", "30003"), NOW + 1)
    assert routing.state is RoutingState.EXHAUSTED
    assert _logs(effects) == [RoutingEvent.EXHAUSTED]
    assert Mirror("msg_1-1") in effects and SetStatus(MessageStatus.FAILED, "30003") in effects


def test_the_same_failure_reported_twice_changes_nothing() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS))
    step(routing, MessageStatus.ACCEPTED, _failed("msg_1-1"), NOW + 1)
    assert step(routing, MessageStatus.ACCEPTED, _failed("msg_1-1"), NOW + 2) == []
    assert len(routing.attempts) == 2


def test_a_step_for_unreachable_customers_only_is_taken_on_its_code() -> None:
    sms = _step(Channel.SMS, MessageStatus.SENT, adapt=True, only_after=("rcs_not_capable",))
    routing = _started(_step(Channel.RCS), sms)
    effects = step(routing, MessageStatus.ACCEPTED, _failed("msg_1-1", "rcs_not_capable"), NOW + 1)
    assert [e.step.channel for e in effects if isinstance(e, StartAttempt)] == [Channel.SMS]


def test_a_step_for_unreachable_customers_only_is_passed_over_on_a_timeout() -> None:
    sms = _step(Channel.SMS, MessageStatus.SENT, adapt=True, only_after=("rcs_not_capable",))
    routing = _started(_step(Channel.RCS), sms)
    effects = step(routing, MessageStatus.ACCEPTED, AttemptTimedOut("msg_1-1"), NOW + 61)
    assert routing.state is RoutingState.EXHAUSTED
    assert not any(isinstance(e, StartAttempt) for e in effects)


def test_a_step_consent_no_longer_allows_is_skipped_with_the_reason() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS), _step(Channel.VOICE))
    stimulus = _failed("msg_1-1", blocked={1: "opted_out (sms_keyword:STOP)"})
    effects = step(routing, MessageStatus.ACCEPTED, stimulus, NOW + 1)
    skipped = next(e for e in effects if isinstance(e, Log) and e.event is RoutingEvent.SKIPPED)
    assert skipped.detail == "sms: opted_out (sms_keyword:STOP)"
    assert [e.step.channel for e in effects if isinstance(e, StartAttempt)] == [Channel.VOICE]


def test_a_failure_after_another_step_succeeded_moves_nothing() -> None:
    routing = _started(_step(Channel.VOICE), _step(Channel.SMS), mode=RouteMode.ALL)
    step(routing, MessageStatus.ACCEPTED, _reached("msg_1-1", MessageStatus.DELIVERED), NOW + 1)
    effects = step(routing, MessageStatus.DELIVERED, _failed("msg_1-2"), NOW + 2)
    assert routing.state is RoutingState.SUCCEEDED
    assert effects == [CancelRoutingTimer(RoutingTimerKind.TIMEOUT, "msg_1-2")]


def test_in_mode_all_the_chain_is_exhausted_only_when_every_step_failed() -> None:
    routing = _started(_step(Channel.VOICE), _step(Channel.SMS), mode=RouteMode.ALL)
    assert _logs(step(routing, MessageStatus.ACCEPTED, _failed("msg_1-1"), NOW + 1)) == []
    effects = step(routing, MessageStatus.ACCEPTED, _failed("msg_1-2"), NOW + 2)
    assert routing.state is RoutingState.EXHAUSTED and _logs(effects) == [RoutingEvent.EXHAUSTED]


def test_a_status_for_an_unknown_attempt_is_ignored() -> None:
    routing = _started(_step(Channel.SMS))
    assert step(routing, MessageStatus.ACCEPTED, _failed("msg_1-9"), NOW + 1) == []


# --- timers ------------------------------------------------------------------------------


def test_a_timeout_of_the_pending_step_falls_back() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS))
    effects = step(routing, MessageStatus.SENT, AttemptTimedOut("msg_1-1"), NOW + 60)
    assert routing.attempts[0].outcome is AttemptOutcome.TIMED_OUT
    assert _logs(effects) == [RoutingEvent.TIMEOUT, RoutingEvent.FALLBACK, RoutingEvent.ATTEMPT]
    timeout = next(e for e in effects if isinstance(e, Log))
    assert timeout.detail == "no delivered on whatsapp within 60s"


def test_a_stale_timeout_changes_nothing() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS))
    step(routing, MessageStatus.ACCEPTED, _reached("msg_1-1", MessageStatus.DELIVERED), NOW + 1)
    assert step(routing, MessageStatus.DELIVERED, AttemptTimedOut("msg_1-1"), NOW + 60) == []


def test_a_success_after_a_timeout_is_a_late_delivery_without_a_third_send() -> None:
    routing = _started(_step(Channel.WHATSAPP), _step(Channel.SMS))
    step(routing, MessageStatus.SENT, AttemptTimedOut("msg_1-1"), NOW + 60)
    effects = step(
        routing, MessageStatus.SENT, _reached("msg_1-1", MessageStatus.DELIVERED, NOW + 70), NOW + 70
    )
    assert routing.attempts[0].outcome is AttemptOutcome.LATE_SUCCESS
    assert routing.state is RoutingState.SUCCEEDED and len(routing.attempts) == 2
    late = next(e for e in effects if isinstance(e, Log))
    assert (late.event, late.detail) == (
        RoutingEvent.LATE_DELIVERY,
        "delivered after fallback to sms; no further step",
    )


def test_a_follow_up_starts_its_step_once() -> None:
    decision = _decision(_step(Channel.VOICE), _step(Channel.SMS, delay=30.0), mode=RouteMode.ALL)
    routing = Routing(request=REQUEST, decision=decision)
    step(routing, MessageStatus.ACCEPTED, Decided(decision), NOW)
    effects = step(routing, MessageStatus.ACCEPTED, FollowUpDue(1), NOW + 30)
    assert [e.step.channel for e in effects if isinstance(e, StartAttempt)] == [Channel.SMS]
    assert step(routing, MessageStatus.ACCEPTED, FollowUpDue(1), NOW + 31) == []


def test_a_follow_up_reopens_an_exhausted_chain() -> None:
    decision = _decision(_step(Channel.VOICE), _step(Channel.SMS, delay=30.0), mode=RouteMode.ALL)
    routing = Routing(request=REQUEST, decision=decision)
    step(routing, MessageStatus.ACCEPTED, Decided(decision), NOW)
    routing.state = RoutingState.EXHAUSTED
    step(routing, MessageStatus.FAILED, FollowUpDue(1), NOW + 30)
    assert routing.state is RoutingState.ACTIVE and len(routing.attempts) == 2


def test_a_follow_up_of_a_deferred_message_waits() -> None:
    decision = _decision(_step(Channel.SMS), outcome=DecisionOutcome.DEFER, deferred_until=NOW + 10)
    routing = Routing(request=REQUEST, decision=decision)
    step(routing, MessageStatus.ACCEPTED, Decided(decision), NOW)
    assert step(routing, MessageStatus.ACCEPTED, FollowUpDue(0), NOW + 5) == []


def test_count_send_is_only_for_capped_types() -> None:
    routing = Routing(request=REQUEST, decision=_decision(_step(Channel.SMS)))
    effects = step(routing, MessageStatus.ACCEPTED, Decided(routing.decision, capped=False), NOW)
    assert CountSend() not in effects
