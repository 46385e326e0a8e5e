"""The journey step machine: pure functions from (instance, stimulus, now) to (instance', effects).

No I/O and no clock: time comes in as ``now``, ids are derived from the instance, so the same
inputs always give the same outputs (tests drive whole journeys through days in microseconds).
The runner (conversations.journeys.runner) feeds it stimuli and writes its effects.
"""

from __future__ import annotations

import copy
from typing import Any

from conversations.journeys.conditions import (
    MISSING,
    event_matches,
    holds,
    lookup,
    parse_instant,
    reply_matches,
)
from conversations.journeys.definition import (
    LAST_CHANNEL,
    BranchStep,
    Case,
    HandoffStep,
    Journey,
    SendStep,
    UpdateStep,
    WaitStep,
)
from conversations.journeys.durations import format_duration
from conversations.journeys.instance import (
    CancelTimer,
    Count,
    Effect,
    EventSeen,
    EventSnapshot,
    Finish,
    HandBack,
    HandedBack,
    HandOff,
    Instance,
    InstanceStatus,
    JourneyCustomer,
    LogEntry,
    ReplySeen,
    ScheduleTimer,
    SendJourneyMessage,
    SendRecord,
    SetAttributes,
    Start,
    StatusSeen,
    Stimulus,
    TimerFired,
    WaitState,
)
from conversations.journeys.templates import TemplateProblem
from conversations.models import Channel, Identifier, IdentifierKind

MAX_STEPS_PER_ADVANCE = 100  # a branch loop without a wait would otherwise spin forever
MAX_LOG = 50
SEND_OUTCOMES = ("sent", "delivered", "read", "replied", "clicked", "failed")

# Which of the customer's handles can carry each channel, best first.
_ADDRESSES: dict[str | None, tuple[IdentifierKind, ...]] = {
    "sms": (IdentifierKind.PHONE,),
    "voice": (IdentifierKind.PHONE,),
    "whatsapp": (IdentifierKind.PHONE, IdentifierKind.WA_ID),
    "rcs": (IdentifierKind.PHONE, IdentifierKind.RCS),
    "email": (IdentifierKind.EMAIL,),
    None: (IdentifierKind.PHONE, IdentifierKind.EMAIL, IdentifierKind.WA_ID, IdentifierKind.RCS),
}


def may_enter(journey: Journey, last_entered: float | None, now: float) -> bool:
    """Whether the entry rule lets a customer (last entered at ``last_entered``) in now."""
    rule = journey.definition.entry
    if journey.definition.status != "active":
        return False
    if last_entered is None or rule.rule == "always":
        return True
    if rule.rule == "once":
        return False
    assert rule.every is not None  # validated: once_per has every
    return now - last_entered >= rule.every.seconds


def triggers(journey: Journey, event: EventSnapshot, customer: JourneyCustomer) -> bool:
    """Whether ``event`` is this journey's trigger (name and filter)."""
    return event_matches(journey.definition.trigger, event, customer.attributes)


def new_instance(
    journey: Journey, instance_id: str, customer_id: str, trigger: EventSnapshot, now: float
) -> Instance:
    """A fresh instance at the first step; advance it with ``Start``."""
    return Instance(
        id=instance_id,
        journey=journey.name,
        version=journey.version,
        customer_id=customer_id,
        status=InstanceStatus.RUNNING,
        position=0,
        started_at=now,
        updated_at=now,
        trigger=trigger,
        last_event=trigger,
    )


def advance(
    instance: Instance,
    journey: Journey,
    stimulus: Stimulus,
    now: float,
    customer: JourneyCustomer,
) -> tuple[Instance, list[Effect]]:
    """Apply one stimulus; returns the new instance and what the shard must do about it."""
    run = _Run(copy.deepcopy(instance), journey, now, copy.deepcopy(customer))
    if run.instance.status.finished:
        return run.instance, []
    run.apply(stimulus)
    if run.instance != instance:
        run.instance.updated_at = now
    return run.instance, run.effects


def stop(
    instance: Instance, journey: Journey, now: float, reason: str, customer: JourneyCustomer
) -> tuple[Instance, list[Effect]]:
    """End an instance from outside (e.g. a restart under ``entry: always``)."""
    run = _Run(copy.deepcopy(instance), journey, now, copy.deepcopy(customer))
    if not run.instance.status.finished:
        run.finish(InstanceStatus.EXITED, reason)
        run.instance.updated_at = now
    return run.instance, run.effects


def current_step_id(instance: Instance, journey: Journey) -> str:
    steps = journey.definition.steps
    return steps[instance.position].id if instance.position < len(steps) else "end"


class _Run:
    """One advance: the instance being changed and the effects collected so far."""

    def __init__(self, instance: Instance, journey: Journey, now: float, customer: JourneyCustomer) -> None:
        self.instance = instance
        self.journey = journey
        self.now = now
        self.customer = customer
        self.effects: list[Effect] = []

    # --- stimuli --------------------------------------------------------------------

    def apply(self, stimulus: Stimulus) -> None:
        instance = self.instance
        if isinstance(stimulus, Start):
            self.log("start", f"entered on {instance.trigger.name}")
            self.run()
        elif isinstance(stimulus, EventSeen):
            self.on_event(stimulus.event)
        elif isinstance(stimulus, ReplySeen):
            self.on_reply(stimulus)
        elif isinstance(stimulus, StatusSeen):
            self.on_status(stimulus.message_id, stimulus.outcome, stimulus.error)
        elif isinstance(stimulus, TimerFired):
            wait = instance.wait
            if wait is None or wait.token != stimulus.token:
                return  # a timer of a wait that already ended (cancelled too late): ignore
            self.resume("timeout", cancel_timer=False)
        elif isinstance(stimulus, HandedBack):
            if instance.wait is not None and instance.wait.handoff:
                agent = f" by {stimulus.agent}" if stimulus.agent else ""
                self.log(instance.wait.step, f"handed back{agent}")
                self.resume("handback")

    def on_event(self, event: EventSnapshot) -> None:
        definition = self.journey.definition
        attributes = self.customer.attributes
        goal = definition.goal_match()
        if goal is not None and event_matches(goal, event, attributes):
            self.instance.last_event = event
            self.finish(InstanceStatus.CONVERTED, f"goal {event.name}")
            return
        for match in definition.exit_matches():
            if event_matches(match, event, attributes):
                self.instance.last_event = event
                self.finish(InstanceStatus.EXITED, f"exit event {event.name}")
                return
        wait = self.instance.wait
        if wait is None or wait.handoff or not wait.event or wait.event != event.name:
            return
        if any(not _equal(lookup(event.properties, k), v) for k, v in wait.correlate.items()):
            return
        step = self.step_at(self.instance.position)
        if isinstance(step, WaitStep) and not all(
            holds(p, attributes, event.properties) for p in step.filter
        ):
            return
        self.instance.last_event = event
        self.log(wait.step, f"got {event.name}")
        self.resume("event")

    def on_reply(self, reply: ReplySeen) -> None:
        instance = self.instance
        instance.last_reply = reply.body
        instance.last_reply_at = reply.at
        if instance.sends:
            last = instance.sends[-1]
            if last.at <= reply.at:
                self.mark(last, "replied")
        wait = instance.wait
        if wait is not None and wait.reply and not wait.handoff and reply.at >= wait.since:
            self.log(wait.step, f"reply on {reply.channel}: {reply.body[:60]!r}")
            self.resume("replied")

    def on_status(self, message_id: str, outcome: str, error: str) -> None:
        for record in self.instance.sends:
            if record.message_id == message_id:
                if outcome == "read":
                    self.mark(record, "delivered")
                self.mark(record, outcome)
                if error and not record.error:
                    record.error = error
                return

    def mark(self, record: SendRecord, outcome: str) -> None:
        if outcome in record.outcomes or outcome not in SEND_OUTCOMES:
            return
        record.outcomes.append(outcome)
        self.effects.append(Count(record.step, outcome))

    # --- running steps ----------------------------------------------------------------

    def resume(self, how: str, cancel_timer: bool = True) -> None:
        """End the current wait (or handoff) and run on from the next step."""
        instance = self.instance
        wait = instance.wait
        assert wait is not None
        if cancel_timer and wait.due is not None:
            self.effects.append(CancelTimer(wait.token))
        if wait.handoff:
            self.effects.append(HandBack())
        if how == "timeout":
            self.log(wait.step, "timed out" if wait.event or wait.reply or wait.handoff else "waited")
        instance.wait = None
        instance.last_wait = how
        instance.status = InstanceStatus.RUNNING
        instance.position = self.journey.position(self.step_at(instance.position).next, instance.position)
        self.run()

    def run(self) -> None:
        """Run steps until one blocks (wait, handoff) or the journey ends."""
        instance = self.instance
        steps = self.journey.definition.steps
        for _ in range(MAX_STEPS_PER_ADVANCE):
            if instance.position >= len(steps):
                self.finish(InstanceStatus.COMPLETED, "completed")
                return
            step = steps[instance.position]
            if isinstance(step, SendStep):
                self.send(step)
            elif isinstance(step, WaitStep):
                if self.wait(step):
                    return
                continue  # wait already over (until a past time): position moved on
            elif isinstance(step, BranchStep):
                target = self.branch(step)
                instance.position = self.journey.position(target, instance.position)
                continue
            elif isinstance(step, UpdateStep):
                self.update(step)
            elif isinstance(step, HandoffStep):
                self.handoff(step)
                return
            instance.position = self.journey.position(step.next, instance.position)
        self.finish(InstanceStatus.EXITED, f"more than {MAX_STEPS_PER_ADVANCE} steps without a wait")

    def send(self, step: SendStep) -> None:
        instance = self.instance
        instance.last_wait = ""  # the "last step's outcome" is now this send's
        channel_name = step.channel
        if channel_name == LAST_CHANNEL:
            channel_name = self.customer.last_channel or None
        message_id = f"msg_{instance.id.removeprefix('jin_')}_{len(instance.sends) + 1}"
        record = SendRecord(message_id, step.id, channel_name or "", self.now)
        instance.sends.append(record)
        recipient = _recipient(self.customer.identifiers, channel_name)
        try:
            context = self.context()
            variables = {
                name: self.render(value, context) if isinstance(value, str) else value
                for name, value in step.variables.items()
            }
            body = self.render(step.body, {**context, **variables}).strip()
            subject = self.render(step.subject, {**context, **variables}).strip() if step.subject else ""
        except TemplateProblem as exc:
            self.fail_send(record, str(exc))
            return
        if recipient is None:
            self.fail_send(record, f"customer has no address for {channel_name or 'any channel'}")
            return
        if not body:
            self.fail_send(record, "the message rendered empty")
            return
        channel = Channel(channel_name) if channel_name else None
        self.effects.append(
            SendJourneyMessage(
                message_id, step.id, recipient, body, step.message_type, channel, subject, step.track
            )
        )
        self.mark(record, "sent")  # "sent" means the journey emitted it; a provider's "sent" adds nothing
        self.log(step.id, f"sent {message_id} via {channel_name or 'routing'}")

    def fail_send(self, record: SendRecord, error: str) -> None:
        record.error = error
        self.mark(record, "failed")
        self.log(record.step, f"not sent: {error}")

    def wait(self, step: WaitStep) -> bool:
        """Start waiting; False when there is nothing to wait for (the time already passed)."""
        instance = self.instance
        if step.duration is not None:
            due = self.now + step.duration.seconds
            what = f"waiting {step.duration.text}"
        elif step.until is not None:
            at = parse_instant(lookup(instance.trigger.properties, step.until))
            before = step.before.seconds if step.before is not None else 0.0
            if at is None:
                self.log(step.id, f"skipped: trigger has no time in {step.until}")
                instance.last_wait = "timeout"
                instance.position = self.journey.position(step.next, instance.position)
                return False
            due = at - before
            if due <= self.now:
                self.log(step.id, f"skipped: that time has passed -> {step.if_passed or step.next or 'next'}")
                instance.last_wait = "timeout"
                instance.position = self.journey.position(step.if_passed or step.next, instance.position)
                return False
            what = f"waiting until {format_duration(before)} before {step.until}" if before else "waiting"
        else:
            assert step.timeout is not None  # validated: event/reply waits have a timeout
            due = self.now + step.timeout.seconds
            target = " or ".join(([step.event] if step.event else []) + (["a reply"] if step.reply else []))
            what = f"waiting up to {step.timeout.text} for {target}"
        instance.tokens += 1
        correlate = {
            name: value
            for name in step.correlate
            if (value := lookup(instance.trigger.properties, name)) is not MISSING
        }
        instance.wait = WaitState(
            step=step.id,
            token=instance.tokens,
            due=due,
            event=step.event or "",
            reply=step.reply,
            correlate=correlate,
            since=self.now,
        )
        instance.status = InstanceStatus.WAITING
        self.effects.append(ScheduleTimer(instance.tokens, due))
        self.log(step.id, what)
        return True

    def branch(self, step: BranchStep) -> str | None:
        for index, case in enumerate(step.cases):
            if self.case_holds(case):
                self.log(step.id, f"case {index} -> {case.goto}")
                return case.goto
        self.log(step.id, f"default -> {step.default or 'next'}")
        return step.default

    def case_holds(self, case: Case) -> bool:
        instance = self.instance
        if case.outcome:
            seen = set(instance.sends[-1].outcomes) if instance.sends else set()
            if instance.last_wait:
                seen.add(instance.last_wait)
            if not seen.intersection(case.outcome):
                return False
        if case.reply and not (instance.last_reply and reply_matches(instance.last_reply, case.reply)):
            return False
        properties = (instance.last_event or instance.trigger).properties
        return all(holds(p, self.customer.attributes, properties) for p in case.match)

    def update(self, step: UpdateStep) -> None:
        context = self.context()
        values: dict[str, Any] = {}
        for name, value in step.values.items():
            if isinstance(value, str):
                try:
                    value = self.render(value, context)
                except TemplateProblem as exc:
                    self.log(step.id, f"not set {name}: {exc}")
                    continue
            values[name] = value
        if values:
            self.customer.attributes.update(values)
            self.effects.append(SetAttributes(values))
            self.log(step.id, "set " + ", ".join(sorted(values)))

    def handoff(self, step: HandoffStep) -> None:
        instance = self.instance
        instance.tokens += 1
        due = self.now + step.timeout.seconds if step.timeout is not None else None
        instance.wait = WaitState(step=step.id, token=instance.tokens, due=due, handoff=True)
        instance.status = InstanceStatus.HANDED_OFF
        try:
            note = self.render(step.note, self.context()) if step.note else ""
        except TemplateProblem:
            note = step.note
        self.effects.append(HandOff(step.queue, note))
        if due is not None:
            self.effects.append(ScheduleTimer(instance.tokens, due))
        self.log(step.id, f"handed off to {step.queue}")

    def finish(self, status: InstanceStatus, reason: str) -> None:
        instance = self.instance
        wait = instance.wait
        if wait is not None:
            if wait.due is not None:
                self.effects.append(CancelTimer(wait.token))
            if wait.handoff:
                self.effects.append(HandBack())
        instance.wait = None
        instance.status = status
        instance.finished_at = self.now
        instance.reason = reason
        self.effects.append(Finish(status, reason))
        self.log(current_step_id(instance, self.journey), f"{status.value}: {reason}")

    # --- helpers --------------------------------------------------------------------

    def step_at(self, position: int):
        return self.journey.definition.steps[position]

    def context(self) -> dict[str, Any]:
        """What templates see: customer, event (the trigger's properties), last_event, reply."""
        instance = self.instance
        customer: dict[str, Any] = {"id": self.customer.id, "last_channel": self.customer.last_channel}
        custom: dict[str, Any] = {}
        for name, value in self.customer.attributes.items():
            if name.startswith("custom."):
                custom[name[7:]] = value
            else:
                customer[name] = value
        customer["custom"] = custom
        return {
            "customer": customer,
            "event": instance.trigger.properties,
            "last_event": (instance.last_event or instance.trigger).properties,
            "reply": instance.last_reply,
            "journey": {"name": instance.journey, "version": instance.version, "instance": instance.id},
        }

    def render(self, source: str, context: dict[str, Any]) -> str:
        return self.journey.templates.render(source, context)

    def log(self, step: str, what: str) -> None:
        log = self.instance.log
        log.append(LogEntry(self.now, step, what))
        if len(log) > MAX_LOG:
            del log[: len(log) - MAX_LOG]


def _recipient(identifiers: list[Identifier], channel: str | None) -> Identifier | None:
    for kind in _ADDRESSES.get(channel, ()):
        for identifier in identifiers:
            if identifier.kind is kind:
                return identifier
    return None


def _equal(a: Any, b: Any) -> bool:
    return a is not MISSING and a == b
