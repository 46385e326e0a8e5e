"""Provider webhooks: the path each provider calls, the adapter that reads it, the one handler.

The paths live here only: channels learn the URLs they need (Twilio's Gather action, status
callbacks) from the gateway, through ``status_callbacks`` and the adapters' constructors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from channels.email_inbound import SendGridInboundWebhook
from channels.inbound import InboundAdapter
from channels.rcs_rbm import RbmWebhook
from channels.registry import StatusCallbacks
from channels.sms_twilio import TwilioMessageStatusWebhook, TwilioMessageWebhook
from channels.voice_twilio import TwilioCallStatusWebhook, TwilioGatherWebhook, TwilioIncomingCallWebhook
from channels.whatsapp_cloud import WhatsAppWebhook
from conversations.config import Config
from conversations.models import Channel
from gateway.webhook_handler import webhook_handler

TWILIO_GATHER_PATH = "/webhooks/twilio/voice/gather"


@dataclass(frozen=True, slots=True)
class Webhook:
    """One provider webhook: where it is served and how its adapter is built from the config."""

    path: str
    adapter: Callable[[Config], InboundAdapter]
    methods: tuple[str, ...] = ("POST",)
    status_for: Channel | None = None  # the channel whose status callbacks come here


WEBHOOKS: tuple[Webhook, ...] = (
    Webhook("/webhooks/twilio/sms", lambda c: TwilioMessageWebhook(c.twilio.auth_token)),
    Webhook(
        "/webhooks/twilio/sms/status",
        lambda c: TwilioMessageStatusWebhook(c.twilio.auth_token),
        status_for=Channel.SMS,
    ),
    Webhook(
        "/webhooks/twilio/voice",
        lambda c: TwilioIncomingCallWebhook(c.twilio.auth_token, c.voice, TWILIO_GATHER_PATH),
    ),
    Webhook(
        TWILIO_GATHER_PATH,
        lambda c: TwilioGatherWebhook(c.twilio.auth_token, c.voice, TWILIO_GATHER_PATH),
    ),
    Webhook(
        "/webhooks/twilio/voice/status",
        lambda c: TwilioCallStatusWebhook(c.twilio.auth_token),
        status_for=Channel.VOICE,
    ),
    # Meta posts statuses to the app's one webhook, not to a per-message URL.
    Webhook(
        "/webhooks/whatsapp",
        lambda c: WhatsAppWebhook(c.whatsapp.app_secret, c.whatsapp.verify_token),
        methods=("GET", "POST"),
        status_for=Channel.WHATSAPP,
    ),
    Webhook("/webhooks/rcs", lambda c: RbmWebhook(c.rbm.client_token)),
    Webhook("/webhooks/email/inbound", lambda c: SendGridInboundWebhook(c.email.inbound_secret)),
)


class UnknownWebhook(LookupError):
    """No provider webhook is served at this path."""


def adapter_for(path: str, config: Config) -> InboundAdapter:
    """The adapter serving ``path``; UnknownWebhook names the path when there is none."""
    for webhook in WEBHOOKS:
        if webhook.path == path:
            return webhook.adapter(config)
    raise UnknownWebhook(f"no provider webhook at {path!r}; registered: {[w.path for w in WEBHOOKS]}")


def webhook_routes(config: Config) -> list[web.RouteDef]:
    """One route per webhook and method, each served by the generic handler with its adapter."""
    routes: list[web.RouteDef] = []
    for webhook in WEBHOOKS:
        handler = webhook_handler(webhook.adapter(config))
        routes.extend(web.route(method, webhook.path, handler) for method in webhook.methods)
    return routes


def status_callbacks(public_url: str) -> StatusCallbacks:
    """The status callback URL of each channel, as this gateway serves them."""
    urls = {w.status_for: public_url + w.path for w in WEBHOOKS if w.status_for is not None}
    return StatusCallbacks(urls)
