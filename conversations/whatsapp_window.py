"""WhatsApp's 24-hour customer-service window, as plain functions of times.

Meta lets a business send free-form messages only within 24 hours of the customer's last
message; after that only approved templates go through (error 131047 otherwise). We decide
before the provider does, so a send that cannot succeed never leaves Threadline.
"""

from __future__ import annotations

import msgspec

from conversations.config import WhatsAppTemplate
from conversations.models import TemplateRef

WINDOW_SECONDS = 24 * 3600
OUTSIDE_WINDOW = "outside_whatsapp_window"


def window_open(last_inbound_at: float | None, now: float, window: float = WINDOW_SECONDS) -> bool:
    """True while a free-form message may be sent: the customer wrote less than ``window`` ago."""
    return last_inbound_at is not None and now - last_inbound_at < window


class WhatsAppSendPlan(msgspec.Struct, frozen=True):
    """How one WhatsApp message goes out: free-form, as a template, or refused (with the reason)."""

    template: TemplateRef | None = None
    refused: str = ""  # an error code when we refuse to send
    reason: str = ""


def plan_whatsapp_send(
    *,
    body: str,
    requested_template: TemplateRef | None,
    configured_template: WhatsAppTemplate | None,
    last_inbound_at: float | None,
    now: float,
) -> WhatsAppSendPlan:
    """Decide how to send: an explicit template always goes; free-form only inside the window.

    Outside the window the template configured for the message type stands in (carrying the
    body as its one variable when configured so); without one the send is refused.
    """
    if requested_template is not None:
        return WhatsAppSendPlan(template=requested_template)
    if window_open(last_inbound_at, now):
        return WhatsAppSendPlan()
    if configured_template is not None:
        variables = (body,) if configured_template.body_variable and body else ()
        return WhatsAppSendPlan(
            template=TemplateRef(configured_template.name, configured_template.language, variables)
        )
    since = "never wrote on WhatsApp" if last_inbound_at is None else "last wrote more than 24 h ago"
    return WhatsAppSendPlan(
        refused=OUTSIDE_WINDOW,
        reason=f"the customer {since}; outside the 24-hour window only an approved template may be sent",
    )
