"""Routing's fallback chain as a pure machine: (routing, stimulus, now) -> effects.

``step`` changes the ``Routing`` it is given (its state, attempts and next step) and returns
what must happen around it: attempts to start, timers, log lines, status changes of the
message. It reads nothing and writes nothing; ``conversations.routing.writer`` carries the
effects out inside the batch's transaction. Like ``conversations.journeys.machine``, every
transition is tested without Redis.
"""

from __future__ import annotations

import msgspec

from conversations.models import (
    AttemptOutcome,
    Channel,
    DecisionOutcome,
    MessageStatus,
    RouteAttempt,
    RouteMode,
    RouteStep,
    Routing,
    RoutingDecision,
    RoutingEvent,
    RoutingState,
    RoutingTimerKind,
    StatusChange,
)
from conversations.status import advances

FAILURES = frozenset({MessageStatus.FAILED, MessageStatus.UNDELIVERED})
SUCCESSFUL = frozenset({AttemptOutcome.SUCCEEDED, AttemptOutcome.LATE_SUCCESS})


def attempt_id(message_id: str, number: int) -> str:
    """The id of the ``number``-th attempt (1-based) of a message."""
    return f"{message_id}-{number}"


def timer_id(message_id: str, kind: RoutingTimerKind, detail: str = "") -> str:
    """The durable timer id of one routing timer (a timeout is per attempt, a follow-up per step)."""
    if kind is RoutingTimerKind.TIMEOUT:
        return f"route:{detail}:timeout"
    if kind is RoutingTimerKind.FOLLOW_UP:
        return f"route:{message_id}:step{detail}"
    return f"route:{message_id}:deferred"


def meets(status: MessageStatus, success: MessageStatus) -> bool:
    """Whether ``status`` is at least the step's success condition (sent < delivered < read)."""
    return status not in FAILURES and not advances(status, success)


# --- stimuli ----------------------------------------------------------------------------


class Decided(msgspec.Struct, frozen=True):
    """A new message was decided (or a deferred one decided again)."""

    decision: RoutingDecision
    capped: bool = False  # the message type has a frequency cap: count this send


class AttemptChanged(msgspec.Struct, frozen=True):
    """An attempt's record took a status change; ``status``/``error_code`` are the record's now."""

    attempt_id: str
    change: StatusChange
    status: MessageStatus
    error_code: str = ""
    unreachable: bool = False  # the error code means the customer cannot be reached on the channel
    blocked: dict[int, str] = msgspec.field(default_factory=dict)  # step -> why it may not run now


class AttemptTimedOut(msgspec.Struct, frozen=True):
    """A fallback step's timeout timer came due."""

    attempt_id: str
    blocked: dict[int, str] = msgspec.field(default_factory=dict)  # step -> why it may not run now


class FollowUpDue(msgspec.Struct, frozen=True):
    """Mode "all": a delayed step's timer came due."""

    step: int


Stimulus = Decided | AttemptChanged | AttemptTimedOut | FollowUpDue


# --- effects ----------------------------------------------------------------------------


class StartAttempt(msgspec.Struct, frozen=True):
    """Render, record and queue one attempt for the step it names."""

    attempt: RouteAttempt
    step: RouteStep
    after: Channel | None = None  # a fallback: the channel of the step that did not make it
    after_reason: str = ""  # and why (the provider's error code, or "timeout")


class ScheduleRoutingTimer(msgspec.Struct, frozen=True):
    kind: RoutingTimerKind
    due: float
    attempt_id: str = ""
    step: int = 0


class CancelRoutingTimer(msgspec.Struct, frozen=True):
    kind: RoutingTimerKind
    attempt_id: str = ""


class Log(msgspec.Struct, frozen=True):
    """A routing line in the customer's thread."""

    event: RoutingEvent
    at: float
    channel: Channel | None = None  # None: the channel the message shows now
    attempt_id: str = ""
    detail: str = ""
    decision: RoutingDecision | None = None


class MarkUnreachable(msgspec.Struct, frozen=True):
    channel: Channel
    at: float


class CountSend(msgspec.Struct, frozen=True):
    """The send counts toward its type's frequency cap."""


class Mirror(msgspec.Struct, frozen=True):
    """The message shows the provider details of this attempt."""

    attempt_id: str


class SetStatus(msgspec.Struct, frozen=True):
    """The message's own status (and error) changes."""

    status: MessageStatus
    error_code: str | None = None  # None: leave the message's error code as it is
    error_message: str | None = None  # None: leave it
    history: bool = False  # also add the change to the message's status history


Effect = (
    StartAttempt
    | ScheduleRoutingTimer
    | CancelRoutingTimer
    | Log
    | MarkUnreachable
    | CountSend
    | Mirror
    | SetStatus
)


# --- the machine ------------------------------------------------------------------------


def step(routing: Routing, status: MessageStatus, stimulus: Stimulus, now: float) -> list[Effect]:
    """Apply ``stimulus`` to ``routing`` (changed in place); ``status`` is the message's status."""
    run = _Run(routing, status, now)
    if isinstance(stimulus, Decided):
        run.decided(stimulus)
    elif isinstance(stimulus, AttemptChanged):
        run.attempt_changed(stimulus)
    elif isinstance(stimulus, AttemptTimedOut):
        run.timed_out(stimulus)
    else:
        run.follow_up(stimulus.step)
    return run.effects


def refusal(decision: RoutingDecision) -> tuple[str, str]:
    """The error code and message of a message no channel may carry."""
    if decision.hold is not None:
        return decision.hold.value, f"held by {decision.hold.value}"
    reasons = {skip.reason for skip in decision.skipped}
    message = "; ".join(
        f"{skip.channel}: {skip.reason}" + (f" ({skip.detail})" if skip.detail else "")
        for skip in decision.skipped
    )
    if len(reasons) == 1:
        return next(iter(reasons)).value, message
    return "no_eligible_channel", message or "no channel in the policy"


class _Run:
    """One transition: the routing being changed and the effects it produced so far."""

    def __init__(self, routing: Routing, status: MessageStatus, now: float) -> None:
        self.routing = routing
        self.status = status
        self.now = now
        self.effects: list[Effect] = []

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    def decided(self, stimulus: Decided) -> None:
        routing = self.routing
        fresh = routing.state is RoutingState.ACTIVE and not routing.attempts
        if not (fresh or routing.state is RoutingState.DEFERRED):
            return  # a message already under way is not decided again
        decision = stimulus.decision
        routing.decision = decision
        routing.next_step = 0
        if decision.outcome is DecisionOutcome.DEFER:
            assert decision.deferred_until is not None
            routing.state = RoutingState.DEFERRED
            hold = decision.hold.value if decision.hold else ""
            self.emit(Log(RoutingEvent.DEFERRED, self.now, detail=hold, decision=decision))
            self.emit(ScheduleRoutingTimer(RoutingTimerKind.DEFERRED, decision.deferred_until))
        elif decision.outcome is DecisionOutcome.REFUSE:
            routing.state = RoutingState.REFUSED
            code, message = refusal(decision)
            self.emit(Log(RoutingEvent.REFUSED, self.now, detail=message, decision=decision))
            self.emit(SetStatus(MessageStatus.FAILED, code, message, history=True))
        else:
            routing.state = RoutingState.ACTIVE
            self.emit(Log(RoutingEvent.DECIDED, self.now, decision.chosen, decision=decision))
            if stimulus.capped:
                self.emit(CountSend())
            if decision.mode is RouteMode.ALL:
                for index, planned in enumerate(decision.chain):
                    if planned.delay > 0:
                        due = self.now + planned.delay
                        self.emit(ScheduleRoutingTimer(RoutingTimerKind.FOLLOW_UP, due, step=index))
                    else:
                        self.start(index)
            else:
                self.start(0)

    def start(self, index: int, after: Channel | None = None, after_reason: str = "") -> None:
        """Start step ``index``: a new attempt, its log line and (in a fallback chain) its timeout."""
        routing = self.routing
        planned = routing.decision.chain[index]
        attempt = RouteAttempt(
            id=attempt_id(routing.request.message_id, len(routing.attempts) + 1),
            step=index,
            channel=planned.channel,
            started_at=self.now,
        )
        routing.attempts.append(attempt)
        routing.next_step = max(routing.next_step, index + 1)
        self.emit(StartAttempt(attempt, planned, after, after_reason))
        detail = f"step {index + 1} of {len(routing.decision.chain)}"
        if planned.template:
            detail += f", template {planned.template}"
        self.emit(Log(RoutingEvent.ATTEMPT, self.now, planned.channel, attempt.id, detail))
        if routing.decision.mode is RouteMode.FALLBACK:
            due = self.now + planned.timeout
            self.emit(ScheduleRoutingTimer(RoutingTimerKind.TIMEOUT, due, attempt_id=attempt.id, step=index))

    def attempt_changed(self, stimulus: AttemptChanged) -> None:
        routing = self.routing
        attempt = self._attempt(stimulus.attempt_id)
        if attempt is None:
            return
        change = stimulus.change
        attempt.status = stimulus.status
        attempt.error_code = stimulus.error_code
        planned = routing.decision.chain[attempt.step]
        if change.status in FAILURES:
            self.failed(attempt, stimulus)
        elif meets(change.status, planned.success):
            self.succeeded(attempt, change)
        elif routing.state is not RoutingState.EXHAUSTED:
            if attempt is routing.attempts[-1]:
                self.emit(Mirror(attempt.id))
            if advances(self.status, change.status):
                self.set_status(SetStatus(change.status))

    def succeeded(self, attempt: RouteAttempt, change: StatusChange) -> None:
        routing = self.routing
        if attempt.outcome is AttemptOutcome.FAILED:
            return  # a provider contradicting itself; the failure already moved the chain on
        if attempt.outcome is AttemptOutcome.TIMED_OUT:
            attempt.outcome = AttemptOutcome.LATE_SUCCESS
            later = [
                a.channel.value
                for a in routing.attempts
                if a.started_at >= attempt.started_at and a is not attempt
            ]
            detail = f"{change.status} after fallback to {', '.join(later)}; no further step"
            self.emit(Log(RoutingEvent.LATE_DELIVERY, change.at, attempt.channel, attempt.id, detail))
        elif attempt.outcome is AttemptOutcome.PENDING:
            attempt.outcome = AttemptOutcome.SUCCEEDED
        if routing.state in (RoutingState.ACTIVE, RoutingState.EXHAUSTED):
            routing.state = RoutingState.SUCCEEDED
            for other in routing.attempts:  # no fallback after a success, whichever channel had it
                self.emit(CancelRoutingTimer(RoutingTimerKind.TIMEOUT, other.id))
            self.emit(Log(RoutingEvent.SUCCEEDED, change.at, attempt.channel, attempt.id, str(change.status)))
        self.emit(Mirror(attempt.id))
        if advances(self.status, change.status) or self.status in FAILURES:
            self.set_status(SetStatus(change.status, ""))

    def failed(self, attempt: RouteAttempt, stimulus: AttemptChanged) -> None:
        routing = self.routing
        change = stimulus.change
        if attempt.outcome is AttemptOutcome.FAILED:
            return  # the same failure reported twice (callback and send outcome)
        attempt.outcome = AttemptOutcome.FAILED
        self.emit(CancelRoutingTimer(RoutingTimerKind.TIMEOUT, attempt.id))
        if stimulus.unreachable:
            self.emit(MarkUnreachable(attempt.channel, change.at))
        others_succeeded = any(a.outcome in SUCCESSFUL for a in routing.attempts if a is not attempt)
        if others_succeeded or routing.state in (RoutingState.REFUSED, RoutingState.DEFERRED):
            return
        code = f" {change.error_code}" if change.error_code else ""
        why = f"{attempt.channel} {change.status}{code}"
        failed = (attempt, stimulus.status, stimulus.error_code)
        if routing.decision.mode is RouteMode.FALLBACK:
            if attempt is routing.attempts[-1]:
                reason = change.error_code or str(change.status)
                self.advance(why, failed, attempt.channel, reason, stimulus.blocked)
        elif len(routing.attempts) == len(routing.decision.chain) and all(
            a.outcome is AttemptOutcome.FAILED for a in routing.attempts
        ):
            self.exhaust(why, failed)

    def timed_out(self, stimulus: AttemptTimedOut) -> None:
        routing = self.routing
        attempt = self._attempt(stimulus.attempt_id)
        current = routing.attempts[-1] if routing.attempts else None
        if attempt is None or attempt is not current or attempt.outcome is not AttemptOutcome.PENDING:
            return  # stale: a status already answered this step
        if routing.state is not RoutingState.ACTIVE:
            return
        planned = routing.decision.chain[attempt.step]
        attempt.outcome = AttemptOutcome.TIMED_OUT
        why = f"no {planned.success} on {attempt.channel} within {planned.timeout:g}s"
        self.emit(Log(RoutingEvent.TIMEOUT, self.now, attempt.channel, attempt.id, why))
        self.advance(why, None, attempt.channel, "timeout", stimulus.blocked)

    def follow_up(self, index: int) -> None:
        routing = self.routing
        if routing.state in (RoutingState.DEFERRED, RoutingState.REFUSED):
            return
        if any(a.step == index for a in routing.attempts):
            return
        if routing.state is RoutingState.EXHAUSTED:
            routing.state = RoutingState.ACTIVE
        self.start(index)

    def advance(
        self,
        why: str,
        failed: tuple[RouteAttempt, MessageStatus, str] | None,
        after: Channel,
        reason: str,
        blocked: dict[int, str],
    ) -> None:
        """Move to the next step of a fallback chain, or end it. A step whose condition does not
        hold (RCS's SMS substitute after a plain timeout) is passed over; one that is no longer
        allowed (the customer opted out since the decision) is passed over and logged."""
        routing = self.routing
        routing.state = RoutingState.ACTIVE
        chain = routing.decision.chain
        while routing.next_step < len(chain):
            index = routing.next_step
            planned = chain[index]
            if planned.only_after and reason not in planned.only_after:
                routing.next_step += 1
            elif index in blocked:
                detail = f"{planned.channel}: {blocked[index]}"
                self.emit(Log(RoutingEvent.SKIPPED, self.now, planned.channel, detail=detail))
                routing.next_step += 1
            else:
                break
        if routing.next_step < len(chain):
            next_channel = chain[routing.next_step].channel
            self.emit(Log(RoutingEvent.FALLBACK, self.now, next_channel, detail=f"{why} -> {next_channel}"))
            self.start(routing.next_step, after, reason)
        else:
            self.exhaust(why, failed)

    def exhaust(self, why: str, failed: tuple[RouteAttempt, MessageStatus, str] | None) -> None:
        self.routing.state = RoutingState.EXHAUSTED
        left_out = ", ".join(f"{s.channel} {s.reason}" for s in self.routing.decision.skipped)
        detail = f"{why}; no step left" + (f" (left out: {left_out})" if left_out else "")
        self.emit(Log(RoutingEvent.EXHAUSTED, self.now, detail=detail))
        if failed is not None and self.status not in (MessageStatus.DELIVERED, MessageStatus.READ):
            attempt, status, error_code = failed
            self.emit(Mirror(attempt.id))
            self.set_status(SetStatus(status, error_code))

    def set_status(self, effect: SetStatus) -> None:
        self.status = effect.status
        self.emit(effect)

    def _attempt(self, wanted: str) -> RouteAttempt | None:
        return next((a for a in self.routing.attempts if a.id == wanted), None)
