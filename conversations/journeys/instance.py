"""A customer's run through a journey, what can happen to it, and what it asks the shard to do.

``Instance`` is stored (msgpack, one key per instance). Stimuli go into the step machine;
effects come out and the runner turns them into Redis writes inside the batch transaction.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from conversations.models import Channel, Identifier

Scalar = str | int | float | bool | None


class InstanceStatus(enum.StrEnum):
    """Where an instance stands."""

    RUNNING = "running"  # only between steps, never stored
    WAITING = "waiting"
    HANDED_OFF = "handed_off"  # an agent has the customer; automation paused
    COMPLETED = "completed"
    CONVERTED = "converted"  # the goal event happened
    EXITED = "exited"  # an exit event, a restart, or an error

    @property
    def finished(self) -> bool:
        return self in (InstanceStatus.COMPLETED, InstanceStatus.CONVERTED, InstanceStatus.EXITED)


class EventSnapshot(msgspec.Struct, frozen=True):
    """An event as the journey saw it."""

    name: str
    at: float
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    event_id: str = ""


class SendRecord(msgspec.Struct):
    """One message a send step emitted, and what became of it so far."""

    message_id: str
    step: str
    channel: str  # "" when routing chose
    at: float
    outcomes: list[str] = msgspec.field(default_factory=list)  # sent, delivered, read, replied, …
    error: str = ""


class WaitState(msgspec.Struct):
    """What a waiting (or handed-off) instance waits for."""

    step: str
    token: int
    due: float | None = None
    event: str = ""
    reply: bool = False
    correlate: dict[str, Any] = msgspec.field(default_factory=dict)
    handoff: bool = False
    since: float = 0.0  # replies received before the wait began do not answer it


class LogEntry(msgspec.Struct, frozen=True):
    """One thing the instance did, for the customer's journey view."""

    at: float
    step: str
    what: str


class Instance(msgspec.Struct, kw_only=True):
    """One customer's run through one version of a journey."""

    id: str
    journey: str
    version: int
    customer_id: str
    status: InstanceStatus
    position: int  # index of the current step
    started_at: float
    updated_at: float
    trigger: EventSnapshot
    wait: WaitState | None = None
    tokens: int = 0  # timer tokens issued; a fired timer must carry the current one
    sends: list[SendRecord] = msgspec.field(default_factory=list)
    last_event: EventSnapshot | None = None
    last_wait: str = ""  # how the last wait ended: event, replied, timeout, handback
    last_reply: str = ""
    last_reply_at: float | None = None
    finished_at: float | None = None
    reason: str = ""
    log: list[LogEntry] = msgspec.field(default_factory=list)


class JourneyCustomer(msgspec.Struct):
    """What the machine may know about the customer: attributes, handles, last channel."""

    id: str
    attributes: dict[str, Scalar] = msgspec.field(default_factory=dict)  # name, custom.vip, …
    identifiers: list[Identifier] = msgspec.field(default_factory=list)
    last_channel: str = ""


# --- stimuli ----------------------------------------------------------------------------


class Start(msgspec.Struct, frozen=True):
    """The instance was just created by its trigger event."""


class EventSeen(msgspec.Struct, frozen=True):
    """The customer did something (a backend event)."""

    event: EventSnapshot


class ReplySeen(msgspec.Struct, frozen=True):
    """The customer wrote to us, on any channel."""

    channel: str
    body: str
    at: float


class StatusSeen(msgspec.Struct, frozen=True):
    """A message sent by the journey changed status (``outcome``: sent, delivered, read, failed, clicked)."""

    message_id: str
    outcome: str
    at: float
    error: str = ""


class TimerFired(msgspec.Struct, frozen=True):
    """A durable timer the instance scheduled came due."""

    token: int


class HandedBack(msgspec.Struct, frozen=True):
    """An agent gave the customer back to automation."""

    at: float
    agent: str = ""


Stimulus = Start | EventSeen | ReplySeen | StatusSeen | TimerFired | HandedBack


# --- effects ----------------------------------------------------------------------------


class SendJourneyMessage(msgspec.Struct, frozen=True):
    """Send like a backend would: an OutboundRequest with a message type and optional channel."""

    message_id: str
    step: str
    recipient: Identifier
    body: str
    message_type: str
    channel: Channel | None = None
    subject: str = ""  # email
    track: bool = False  # tracked links, so opens and clicks come back as outcomes


class ScheduleTimer(msgspec.Struct, frozen=True):
    token: int
    due: float


class CancelTimer(msgspec.Struct, frozen=True):
    token: int


class SetAttributes(msgspec.Struct, frozen=True):
    values: dict[str, Scalar]


class HandOff(msgspec.Struct, frozen=True):
    """Pause automation for this customer and journey; agents take over."""

    queue: str
    note: str = ""


class HandBack(msgspec.Struct, frozen=True):
    """The pause is over (agent handed back, timed out, or the journey ended)."""


class Finish(msgspec.Struct, frozen=True):
    status: InstanceStatus
    reason: str = ""


class Count(msgspec.Struct, frozen=True):
    """Add one to a per-step counter (sent, delivered, read, failed, replied, clicked)."""

    step: str
    metric: str


Effect = (
    SendJourneyMessage | ScheduleTimer | CancelTimer | SetAttributes | HandOff | HandBack | Finish | Count
)


decode_instance = msgspec.msgpack.Decoder(Instance).decode
