"""The routing policy: a TOML file validated into msgspec structs at start.

A bad file stops start-up with one line naming the field and, where it can be found, the
TOML line (``routing policy default_policy.toml: Expected `int`, got `str` - at
`$.types.marketing.frequency_cap.max` (line 71)``).
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from datetime import time as clock_time
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from conversations.models import Channel, MessageStatus, RouteMode, RouteOrder

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.toml")

SuccessCondition = Literal["queued", "sent", "delivered", "read"]
HHMM = Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
_FIELD_PATH = re.compile(r"at `\$\.?([^`]*)`")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")


class PolicyError(ValueError):
    """An invalid routing policy, in one line naming the field (and TOML line when known)."""


class ChannelRules(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How one channel behaves in every chain it appears in."""

    success: SuccessCondition = "sent"
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    rich: bool = False  # carries media / cards without adaptation
    window_hours: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # 0: no session window
    outside_window: Literal["template", "skip"] = "skip"
    template: str = ""
    unreachable_codes: list[str] = msgspec.field(default_factory=list)
    unreachable_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # how long a learned "unreachable" holds
    # A message pinned to this channel goes on here (content adapted) when the customer cannot
    # be reached on it: an RCS card becomes an SMS when the phone has no RCS.
    unreachable_fallback: Channel | None = None

    @property
    def success_status(self) -> MessageStatus:
        return MessageStatus(self.success)


class StepRules(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Overrides for one channel within one message type's chain."""

    success: SuccessCondition | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None
    template: str | None = None
    adapt: bool = False  # send adapted (plain) content where the channel is not rich
    min_engagement: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    delay_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # mode "all": start later


class FrequencyCap(msgspec.Struct, forbid_unknown_fields=True):
    """At most ``max`` sends of a type per customer per ``window_days``."""

    max: Annotated[int, msgspec.Meta(ge=1)]
    window_days: Annotated[float, msgspec.Meta(gt=0)]
    action: Literal["drop", "defer"] = "drop"

    @property
    def window_seconds(self) -> float:
        return self.window_days * 86400.0


class TypeRules(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How one message type is routed."""

    chain: Annotated[list[Channel], msgspec.Meta(min_length=1)]
    mode: RouteMode = RouteMode.FALLBACK
    order: RouteOrder = RouteOrder.PINNED
    quiet_hours: bool = False
    max_price: Annotated[float, msgspec.Meta(ge=0)] | None = None
    frequency_cap: FrequencyCap | None = None
    steps: dict[Channel, StepRules] = msgspec.field(default_factory=dict)
    allow_preferred_outside_chain: bool = True  # a channel the customer prefers joins the chain
    optimise_send_time: bool = False  # ask the send-time hook (conversations.routing.engagement)


class QuietHours(msgspec.Struct, forbid_unknown_fields=True):
    """A daily window, ``HH:MM`` in the customer's time zone; it may wrap past midnight."""

    start: HHMM = "21:00"
    end: HHMM = "08:00"

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("start and end are equal (an empty window)")

    @property
    def start_time(self) -> clock_time:
        return clock_time.fromisoformat(self.start)

    @property
    def end_time(self) -> clock_time:
        return clock_time.fromisoformat(self.end)


class RoutingPolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The whole policy file."""

    version: int = 1
    default_type: str = "service"
    default_timezone: str = "UTC"
    default_country: str = "US"
    quiet_hours: QuietHours = msgspec.field(default_factory=QuietHours)
    channels: dict[Channel, ChannelRules] = msgspec.field(default_factory=dict)
    types: dict[str, TypeRules]

    def __post_init__(self) -> None:
        if self.default_type not in self.types:
            raise ValueError(f"{self.default_type!r} is not a type in [types] - at `$.default_type`")
        try:
            zoneinfo.ZoneInfo(self.default_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {self.default_timezone!r} - at `$.default_timezone`"
            ) from None
        for name, rules in self.types.items():
            if len(set(rules.chain)) != len(rules.chain):
                raise ValueError(f"a channel appears twice in the chain - at `$.types.{name}.chain`")
            for channel in rules.steps:
                if channel not in rules.chain:
                    raise ValueError(
                        f"step for {channel} which is not in the chain - at `$.types.{name}.steps.{channel}`"
                    )

    def rules_for(self, message_type: str) -> tuple[str, TypeRules]:
        """The type's rules, or the default type's for a type the policy does not know."""
        if message_type in self.types:
            return message_type, self.types[message_type]
        return self.default_type, self.types[self.default_type]

    def channel(self, channel: Channel) -> ChannelRules:
        return self.channels.get(channel) or ChannelRules()


def parse_policy(text: str, source: str = "<policy>") -> RoutingPolicy:
    """Validate policy TOML text; raise PolicyError naming the field and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line N, column M)"
        raise PolicyError(f"routing policy {source}: {exc}") from None
    try:
        # Tables keyed by name are checked one by one first: msgspec reports a dict entry's
        # path as `[...]`, and the point is to name the field.
        for section, value_type in (("channels", ChannelRules), ("types", TypeRules)):
            table = data.get(section)
            if isinstance(table, dict):
                for name, value in table.items():
                    _convert_at(value, value_type, f"{section}.{name}")
        return msgspec.convert(data, RoutingPolicy)
    except (msgspec.ValidationError, ValueError) as exc:
        message = str(exc)
        match = _FIELD_PATH.search(message)
        path = match.group(1) if match else ""
        unknown = _UNKNOWN_FIELD.search(message)
        if unknown:
            path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        line = _line_of(text, path) if path else None
        where = f" (line {line})" if line else ""
        raise PolicyError(f"routing policy {source}: {message}{where}") from None


def _convert_at(value: object, value_type: type, path: str) -> None:
    """Validate ``value`` as ``value_type``; errors name ``path`` as their root."""
    try:
        msgspec.convert(value, value_type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if "at `$" in message:
            message = message.replace("at `$", f"at `$.{path}", 1).replace(f"$.{path}.[", f"$.{path}[")
        else:
            message = f"{message} - at `$.{path}`"
        raise ValueError(message) from None


def load_policy(path: str | Path | None = None) -> RoutingPolicy:
    """Load the policy at ``path``, or the default shipped with Threadline."""
    policy_path = Path(path) if path else DEFAULT_POLICY_PATH
    try:
        text = policy_path.read_text()
    except OSError as exc:
        raise PolicyError(f"routing policy {policy_path}: cannot read: {exc.strerror}") from None
    return parse_policy(text, policy_path.name)


_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\"' -]+?)\s*=")


def _line_of(text: str, path: str) -> int | None:
    """The line defining ``path`` (``types.marketing.frequency_cap.max``), or of its nearest parent.

    tomllib keeps no positions for values, so this walks the text tracking table headers: a
    small, forgiving locator that is right for the policy files people write by hand.
    """
    wanted = [part for part in re.split(r"\.|\[\d+\]", path) if part]
    best: tuple[int, int] | None = None  # (matched parts, line)
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header:
            table = [part.strip().strip("\"'") for part in header.group(1).split(".")]
            candidate = table
        else:
            key = _KEY.match(line)
            if not key or line.lstrip().startswith("#"):
                continue
            candidate = table + [part.strip().strip("\"'") for part in key.group(1).split(".")]
        matched = 0
        for have, want in zip(candidate, wanted, strict=False):
            if have != want:
                break
            matched += 1
        if matched == len(candidate) and matched > 0 and (best is None or matched > best[0]):
            best = (matched, number)
    return best[1] if best else None
