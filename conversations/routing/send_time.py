"""The send-time optimisation hook routing asks before a send goes out."""

from __future__ import annotations

from typing import Protocol

from conversations.models import Channel
from conversations.routing.context import CustomerContext


class SendTimeOptimiser(Protocol):
    """The hook for send-time optimisation: when would this customer best receive this message?

    ``decide`` asks it for types whose policy sets ``optimise_send_time``; a time later than
    ``now`` defers the send (reason ``send_time``) through the same timer as quiet hours.
    """

    def best_time(self, context: CustomerContext, channel: Channel, now: float) -> float | None: ...


class SendNow:
    """The default optimiser: no opinion, send now."""

    def best_time(self, context: CustomerContext, channel: Channel, now: float) -> float | None:
        return None
