"""Journey definitions: the structs of a journey file, their validation, and the compiled form.

A journey file (YAML or JSON) decodes into ``Definition`` with msgspec; a second pass checks
what msgspec cannot (step references, wait modes, templates). Every error names the step and
the field, e.g. ``steps[2] (wait_for_purchase).timeout: expected duration like 30s, 4h or 14d``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import yaml

from conversations.journeys.durations import Duration, parse_duration
from conversations.journeys.templates import TemplateProblem, Templates

Scalar = str | int | float | bool | None
Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"]
Outcome = Literal["sent", "delivered", "read", "replied", "clicked", "failed", "event", "timeout"]

END = "end"  # the step id that ends a journey
CHANNELS = ("sms", "whatsapp", "rcs", "voice", "email")
LAST_CHANNEL = "last"  # send on the channel the customer last wrote on
KNOWN_ATTRIBUTES = ("name", "locale", "timezone", "lifecycle_stage")
DEFAULT_MESSAGE_TYPES = ("transactional", "service", "marketing", "rich_media", "urgent")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_STEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CUSTOM_KEY = re.compile(r"^[^:]{1,64}$")


class DefinitionError(ValueError):
    """An invalid journey definition; ``field`` is the path, the message names the step."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Predicate(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A test on a customer attribute or an event property (exactly one of the two)."""

    attribute: str | None = None  # e.g. lifecycle_stage, custom.vip
    property: str | None = None  # dotted path into the event's properties, e.g. cart.total
    op: Op = "eq"
    value: Any = None


class EventMatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """An event name, optionally narrowed by predicates."""

    event: str
    filter: list[Predicate] = msgspec.field(default_factory=list)


class EntryRule(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Who may enter: ``once`` ever, ``once_per`` a period (``every``), or ``always``.

    A customer runs one instance of a journey at a time: a new trigger under ``always``
    restarts it, unless ``concurrent`` lets several run side by side (one per order, say).
    """

    rule: Literal["once", "once_per", "always"] = "once"
    every: Duration | None = None
    concurrent: bool = False


class StepBase(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    """Fields every step has: its id and, optionally, the step to go to next."""

    id: str
    next: str | None = None  # default: the following step; "end" finishes the journey


class SendStep(StepBase, tag="send"):
    """Send one message; ``channel`` pins one (or ``last``), absent lets routing choose."""

    body: str
    message_type: str = "service"
    channel: str | None = None
    kind: Literal["text"] = "text"
    subject: str = ""  # email subject (a template)
    track: bool = False  # rewrite links for click tracking (clicks become the "clicked" outcome)
    variables: dict[str, Any] = msgspec.field(default_factory=dict)


class WaitStep(StepBase, tag="wait"):
    """Wait a ``duration``; or for an ``event`` / a ``reply`` up to ``timeout``; or ``until`` a time.

    ``until`` names a property of the triggering event holding a time (unix seconds or ISO 8601),
    optionally ``before`` it (``until: renews_at, before: 14d``); when that time has already
    passed, the journey goes on at ``if_passed`` (default: the next step).
    """

    duration: Duration | None = None
    event: str | None = None
    filter: list[Predicate] = msgspec.field(default_factory=list)
    correlate: list[str] = msgspec.field(default_factory=list)
    reply: bool = False
    timeout: Duration | None = None
    until: str | None = None
    before: Duration | None = None
    if_passed: str | None = None


class Case(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One branch: every condition given must hold; the first matching case wins."""

    goto: str
    outcome: list[Outcome] = msgspec.field(default_factory=list)
    reply: list[str] = msgspec.field(default_factory=list)
    match: list[Predicate] = msgspec.field(default_factory=list)


class BranchStep(StepBase, tag="branch"):
    """Go to the first case whose conditions hold, else to ``default`` (the next step)."""

    cases: list[Case]
    default: str | None = None


class UpdateStep(StepBase, tag="update"):
    """Set customer attributes (string values are templates)."""

    values: dict[str, Scalar] = msgspec.field(name="set")


class HandoffStep(StepBase, tag="handoff"):
    """Pause the journey until an agent hands the customer back (or ``timeout`` passes)."""

    queue: str = "agents"
    note: str = ""
    timeout: Duration | None = None


Step = SendStep | WaitStep | BranchStep | UpdateStep | HandoffStep


class Definition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One journey file."""

    name: str
    trigger: EventMatch
    steps: list[Step]
    description: str = ""
    status: Literal["active", "paused"] = "active"
    entry: EntryRule = msgspec.field(default_factory=EntryRule)
    goal: str | EventMatch | None = None
    exit_on: list[str | EventMatch] = msgspec.field(default_factory=list)

    def goal_match(self) -> EventMatch | None:
        return EventMatch(self.goal) if isinstance(self.goal, str) else self.goal

    def exit_matches(self) -> list[EventMatch]:
        return [EventMatch(e) if isinstance(e, str) else e for e in self.exit_on]


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Duration:
        return parse_duration(obj)
    raise NotImplementedError


# --- parsing --------------------------------------------------------------------------


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` could repeat an anchor exponentially (a "billion laughs")."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in journey files", event.start_mark
            )
        return super().compose_node(parent, index)


def load_source(text: str | bytes, fmt: str = "yaml") -> dict[str, Any]:
    """Parse a journey file's text (``yaml`` also reads JSON, without aliases) into plain data."""
    try:
        data = json.loads(text) if fmt == "json" else yaml.load(text, Loader=_NoAliasLoader)
    except (yaml.YAMLError, ValueError) as exc:
        raise DefinitionError("", f"not valid {fmt.upper()}: {exc}") from exc
    except RecursionError:
        raise DefinitionError("", f"not valid {fmt.upper()}: nested too deeply") from None
    if not isinstance(data, dict):
        raise DefinitionError("", "a journey is a mapping with name, trigger and steps")
    # YAML turns unquoted dates into date objects; keep plain JSON types from here on.
    return msgspec.json.decode(msgspec.json.encode(data))


def parse_definition(
    raw: dict[str, Any], message_types: Sequence[str] | None = DEFAULT_MESSAGE_TYPES
) -> Definition:
    """Validate plain data as a journey; DefinitionError names the step and field.

    ``message_types`` None skips the message-type check (for versions stored earlier).
    """
    try:
        definition = msgspec.convert(raw, Definition, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        path, message = _split_msgspec_error(str(exc))
        raise _error(raw, path, message) from None
    _check(definition, raw, None if message_types is None else tuple(message_types))
    return definition


_AT_PATH = re.compile(r"\s*-\s*at `\$\.?([^`]*)`")
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]*)`")


def _split_msgspec_error(text: str) -> tuple[str, str]:
    match = _AT_PATH.search(text)
    path = match.group(1) if match else ""
    named = _NAMED_FIELD.search(text)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    message = _AT_PATH.sub("", text).strip()
    return path, message[:1].lower() + message[1:]


_STEP_PATH = re.compile(r"^steps\[(\d+)\](.*)$")


def _error(raw: dict[str, Any], path: str, message: str) -> DefinitionError:
    """A DefinitionError whose message names the step by index and id."""
    match = _STEP_PATH.match(path)
    where = path
    if match:
        index, rest = int(match.group(1)), match.group(2)
        steps = raw.get("steps")
        step = steps[index] if isinstance(steps, list) and index < len(steps) else None
        step_id = step.get("id") if isinstance(step, dict) else None
        where = f"steps[{index}] ({step_id}){rest}" if isinstance(step_id, str) else path
    return DefinitionError(path, f"{where}: {message}" if where else message)


def _check(definition: Definition, raw: dict[str, Any], message_types: tuple[str, ...] | None) -> None:
    """Checks msgspec cannot express."""

    def fail(path: str, message: str) -> DefinitionError:
        return _error(raw, path, message)

    if not _NAME.match(definition.name):
        raise fail(
            "name", "a journey name is 1-64 characters of a-z 0-9 _ -, starting with a letter or digit"
        )
    _check_match(definition.trigger, "trigger", fail)
    for index, match in enumerate(definition.exit_matches()):
        _check_match(match, f"exit_on[{index}]", fail)
    goal = definition.goal_match()
    if goal is not None:
        _check_match(goal, "goal", fail)
    entry = definition.entry
    if entry.rule == "once_per" and entry.every is None:
        raise fail("entry.every", "once_per needs every: e.g. 7d")
    if entry.rule != "once_per" and entry.every is not None:
        raise fail("entry.every", "every goes with rule: once_per")
    if entry.concurrent and entry.rule != "always":
        raise fail("entry.concurrent", "concurrent goes with rule: always")
    if not definition.steps:
        raise fail("steps", "a journey needs at least one step")
    ids: dict[str, int] = {}
    for index, step in enumerate(definition.steps):
        if not _STEP_ID.match(step.id) or step.id == END:
            raise fail(f"steps[{index}].id", "step ids are 1-64 characters of A-Z a-z 0-9 _ -, not 'end'")
        if step.id in ids:
            raise fail(f"steps[{index}].id", f"duplicate step id (also steps[{ids[step.id]}])")
        ids[step.id] = index
    templates = Templates()
    for index, step in enumerate(definition.steps):
        path = f"steps[{index}]"
        targets = [("next", step.next)]
        if isinstance(step, SendStep):
            _check_send(step, path, message_types, templates, fail)
        elif isinstance(step, WaitStep):
            _check_wait(step, path, fail)
            targets.append(("if_passed", step.if_passed))
        elif isinstance(step, BranchStep):
            if not step.cases:
                raise fail(f"{path}.cases", "a branch needs at least one case")
            for n, case in enumerate(step.cases):
                if not (case.outcome or case.reply or case.match):
                    raise fail(f"{path}.cases[{n}]", "a case needs a condition: outcome, reply or match")
                if any(not isinstance(k, str) or not k.strip() for k in case.reply):
                    raise fail(f"{path}.cases[{n}].reply", "reply keywords are non-empty words")
                for m, predicate in enumerate(case.match):
                    _check_predicate(predicate, f"{path}.cases[{n}].match[{m}]", fail)
                targets.append((f"cases[{n}].goto", case.goto))
            targets.append(("default", step.default))
        elif isinstance(step, UpdateStep):
            if not step.values:
                raise fail(f"{path}.set", "an update sets at least one attribute")
            for name, value in step.values.items():
                if not _attribute_name_ok(name):
                    raise fail(
                        f"{path}.set.{name}",
                        f"unknown attribute: use {', '.join(KNOWN_ATTRIBUTES)} or custom.<name>",
                    )
                if isinstance(value, str):
                    _check_template(templates, value, f"{path}.set.{name}", fail)
        elif isinstance(step, HandoffStep):
            _check_template(templates, step.note, f"{path}.note", fail)
        for name, target in targets:
            if target is not None and target != END and target not in ids:
                raise fail(f"{path}.{name}", f"no step with id {target!r} (or use 'end')")


def _check_send(
    step: SendStep, path: str, message_types: tuple[str, ...] | None, templates: Templates, fail
) -> None:
    if step.channel is not None and step.channel not in (*CHANNELS, LAST_CHANNEL):
        raise fail(f"{path}.channel", f"channel is one of {', '.join(CHANNELS)}, last, or absent for routing")
    if message_types is not None and step.message_type not in message_types:
        raise fail(f"{path}.message_type", f"message types are: {', '.join(message_types)}")
    if not step.body.strip():
        raise fail(f"{path}.body", "the message body is empty")
    _check_template(templates, step.body, f"{path}.body", fail)
    _check_template(templates, step.subject, f"{path}.subject", fail)
    for name, value in step.variables.items():
        if isinstance(value, str):
            _check_template(templates, value, f"{path}.variables.{name}", fail)


def _check_wait(step: WaitStep, path: str, fail) -> None:
    modes = [
        name
        for name, given in (
            ("duration", step.duration is not None),
            ("event", step.event is not None or step.reply),
            ("until", step.until is not None),
        )
        if given
    ]
    if len(modes) != 1:
        raise fail(path, "a wait has exactly one of: duration, event/reply (with timeout), until")
    mode = modes[0]
    if mode == "event":
        if step.timeout is None:
            raise fail(f"{path}.timeout", "expected duration: how long to wait for the event or reply")
        if step.event is not None and not _EVENT_NAME.match(step.event):
            raise fail(f"{path}.event", "event names are 1-64 characters of A-Z a-z 0-9 _ . : -")
    elif step.timeout is not None:
        raise fail(f"{path}.timeout", "timeout goes with event or reply")
    if mode != "event" and (step.filter or step.correlate):
        raise fail(f"{path}.filter" if step.filter else f"{path}.correlate", "goes with event")
    if step.before is not None and mode != "until":
        raise fail(f"{path}.before", "before goes with until")
    if step.if_passed is not None and mode != "until":
        raise fail(f"{path}.if_passed", "if_passed goes with until")
    for n, predicate in enumerate(step.filter):
        _check_predicate(predicate, f"{path}.filter[{n}]", fail)


def _check_match(match: EventMatch, path: str, fail) -> None:
    if not _EVENT_NAME.match(match.event):
        raise fail(f"{path}.event", "event names are 1-64 characters of A-Z a-z 0-9 _ . : -")
    for n, predicate in enumerate(match.filter):
        _check_predicate(predicate, f"{path}.filter[{n}]", fail)


def _check_predicate(predicate: Predicate, path: str, fail) -> None:
    if (predicate.attribute is None) == (predicate.property is None):
        raise fail(path, "a condition names exactly one of attribute or property")
    if predicate.attribute is not None and not _attribute_name_ok(predicate.attribute):
        raise fail(
            f"{path}.attribute", f"unknown attribute: use {', '.join(KNOWN_ATTRIBUTES)} or custom.<name>"
        )
    if predicate.op in ("in", "not_in") and not isinstance(predicate.value, list):
        raise fail(f"{path}.value", f"{predicate.op} needs a list value")


def _check_template(templates: Templates, source: str, path: str, fail) -> None:
    try:
        templates.compile(source)
    except TemplateProblem as exc:
        raise fail(path, str(exc)) from None


def _attribute_name_ok(name: str) -> bool:
    if name in KNOWN_ATTRIBUTES:
        return True
    return name.startswith("custom.") and bool(_CUSTOM_KEY.match(name[7:]))


# --- the compiled form the step machine runs ------------------------------------------


@dataclass(frozen=True)
class Journey:
    """A validated definition at one version, with step positions and compiled templates."""

    definition: Definition
    version: int
    positions: dict[str, int] = field(default_factory=dict)
    templates: Templates = field(default_factory=Templates)

    @property
    def name(self) -> str:
        return self.definition.name

    def position(self, target: str | None, current: int) -> int:
        """Index of the step ``target`` names (``None``: the next one; ``end``: past the last)."""
        if target is None:
            return current + 1
        if target == END:
            return len(self.definition.steps)
        return self.positions[target]


def compile_journey(definition: Definition, version: int) -> Journey:
    """The runnable form of a validated definition."""
    positions = {step.id: index for index, step in enumerate(definition.steps)}
    return Journey(definition, version, positions)
