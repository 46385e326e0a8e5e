"""A customer's channel preferences and consent, per message type, and the rules to apply them."""

from __future__ import annotations

import enum

import msgspec

from conversations.models import Channel

MESSAGE_TYPES = ("transactional", "service", "marketing", "rich_media", "urgent")
# Opt-outs never block these: a customer who texted STOP still gets their OTP and fraud alerts
# only where the law allows it; we follow Twilio's default and treat STOP as blocking every
# type except these on that channel.
CONSENT_EXEMPT_TYPES = frozenset({"transactional"})


class ConsentState(enum.StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class ConsentChange(msgspec.Struct, frozen=True):
    """One audit record: who changed consent for which channel, how, and when."""

    channel: Channel
    state: ConsentState
    source: str  # e.g. "sms_keyword:STOP", "api", "preference_page", "whatsapp_button"
    at: float
    message_type: str | None = None  # None: every non-exempt type
    detail: str = ""


class TypePreference(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """For one message type: the customer's channel order and the channels they refused."""

    order: tuple[Channel, ...] = ()
    opted_out: tuple[Channel, ...] = ()


class Preferences(msgspec.Struct, omit_defaults=True):
    """Everything a customer said about how to reach them."""

    by_type: dict[str, TypePreference] = msgspec.field(default_factory=dict)
    # Channel-wide opt-outs (SMS STOP, WhatsApp "stop" button): channel -> when and how.
    channel_opt_outs: dict[Channel, ConsentChange] = msgspec.field(default_factory=dict)
    updated_at: float = 0.0

    def allows(self, channel: Channel, message_type: str) -> bool:
        """Whether consent permits sending ``message_type`` on ``channel``."""
        if channel in self.channel_opt_outs and message_type not in CONSENT_EXEMPT_TYPES:
            return False
        preference = self.by_type.get(message_type)
        return preference is None or channel not in preference.opted_out

    def preferred_order(self, message_type: str) -> tuple[Channel, ...]:
        preference = self.by_type.get(message_type)
        return preference.order if preference else ()

    def apply(self, change: ConsentChange) -> None:
        """Record a consent change (the audit record is stored separately, forever)."""
        if change.message_type is None:
            if change.state is ConsentState.OPTED_OUT:
                self.channel_opt_outs[change.channel] = change
            else:
                self.channel_opt_outs.pop(change.channel, None)
        else:
            current = self.by_type.get(change.message_type, TypePreference())
            opted_out = set(current.opted_out)
            if change.state is ConsentState.OPTED_OUT:
                opted_out.add(change.channel)
            else:
                opted_out.discard(change.channel)
            self.by_type[change.message_type] = TypePreference(
                current.order, tuple(sorted(opted_out, key=lambda c: c.value))
            )
        self.updated_at = max(self.updated_at, change.at)
