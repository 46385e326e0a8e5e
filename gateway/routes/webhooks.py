"""Provider webhooks: the path each provider calls, the adapter that reads it, the one handler.

The paths live here only: channels learn the URLs they need (Twilio's Gather action, status
callbacks) from the gateway, through ``status_callbacks`` and the adapters' constructors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from channels.email_inbound import InboundEmailReceived, SendGridInboundForm, SendGridInboundWebhook
from channels.inbound import InboundAdapter
from channels.rcs_rbm import RbmWebhook, RbmWebhookBody
from channels.registry import StatusCallbacks
from channels.sms_twilio import (
    TwilioInboundForm,
    TwilioMessageStatusWebhook,
    TwilioMessageWebhook,
    TwilioStatusForm,
)
from channels.voice_twilio import (
    TwilioCallOptOutWebhook,
    TwilioCallStatusWebhook,
    TwilioGatherWebhook,
    TwilioIncomingCallWebhook,
    TwilioVoiceForm,
)
from channels.whatsapp_cloud import Received, WhatsAppWebhook, WhatsAppWebhookBody
from conversations.config import Config
from conversations.models import Channel
from gateway.endpoints import (
    FORM,
    JSON,
    MULTIPART,
    TEXT,
    XML,
    Endpoint,
    Endpoints,
    Param,
    Security,
    hook_endpoint,
)
from gateway.webhook_handler import webhook_handler

TWILIO_GATHER_PATH = "/webhooks/twilio/voice/gather"
UNSUBSCRIBE_PATH = "/unsubscribe"  # the one-click email opt-out page (gateway/routes/unsubscribe.py)
_STRING = {"type": "string"}
_OUR_IDS = (
    Param("mid", "query", _STRING, "Our message id (set in the callback URL)", True),
    Param("cid", "query", _STRING, "Our customer id (set in the callback URL)", True),
)
_SIGNED = Security.TWILIO_SIGNATURE


@dataclass(frozen=True, slots=True)
class Webhook:
    """One provider webhook: its adapter (built from the config) and its documented methods."""

    adapter: Callable[[Config], InboundAdapter]
    endpoints: tuple[Endpoint, ...]  # one per method, all at one path
    status_for: Channel | None = None  # the channel whose status callbacks come here
    opt_out_for: Channel | None = None  # the channel whose one-step opt-outs come here

    @property
    def path(self) -> str:
        return self.endpoints[0].path

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(endpoint.method for endpoint in self.endpoints)


WEBHOOKS: tuple[Webhook, ...] = (
    Webhook(
        lambda c: TwilioMessageWebhook(c.twilio.auth_token),
        (
            hook_endpoint(
                "POST",
                "/webhooks/twilio/sms",
                "twilioInboundMessage",
                "Twilio inbound message (signed with X-Twilio-Signature)",
                ("Stored; empty TwiML", None, XML),
                TwilioInboundForm,
                FORM,
                security=_SIGNED,
            ),
        ),
    ),
    Webhook(
        lambda c: TwilioMessageStatusWebhook(c.twilio.auth_token),
        (
            hook_endpoint(
                "POST",
                "/webhooks/twilio/sms/status",
                "twilioMessageStatus",
                "Twilio message status callback (signed with X-Twilio-Signature)",
                ("Stored; empty TwiML", None, XML),
                TwilioStatusForm,
                FORM,
                params=_OUR_IDS,
                security=_SIGNED,
            ),
        ),
        status_for=Channel.SMS,
    ),
    Webhook(
        lambda c: TwilioIncomingCallWebhook(c.twilio.auth_token, c.voice, TWILIO_GATHER_PATH),
        (
            hook_endpoint(
                "POST",
                "/webhooks/twilio/voice",
                "twilioIncomingCall",
                "Twilio incoming call (signed); answered with a TwiML Gather",
                ("TwiML", None, XML),
                TwilioVoiceForm,
                FORM,
                security=_SIGNED,
            ),
        ),
    ),
    Webhook(
        lambda c: TwilioGatherWebhook(c.twilio.auth_token, c.voice, TWILIO_GATHER_PATH),
        (
            hook_endpoint(
                "POST",
                TWILIO_GATHER_PATH,
                "twilioGatherResult",
                "What the caller said or pressed (signed)",
                ("TwiML", None, XML),
                TwilioVoiceForm,
                FORM,
                params=(Param("seq", "query", {"type": "integer", "minimum": 1}, "Turn number", True),),
                security=_SIGNED,
            ),
        ),
    ),
    Webhook(
        lambda c: TwilioCallStatusWebhook(c.twilio.auth_token),
        (
            hook_endpoint(
                "POST",
                "/webhooks/twilio/voice/status",
                "twilioCallStatus",
                "Twilio call status callback (signed)",
                ("Stored; TwiML", None, XML),
                TwilioVoiceForm,
                FORM,
                params=_OUR_IDS,
                security=_SIGNED,
            ),
        ),
        status_for=Channel.VOICE,
    ),
    Webhook(
        lambda c: TwilioCallOptOutWebhook(c.twilio.auth_token, c.voice),
        (
            hook_endpoint(
                "POST",
                "/webhooks/twilio/voice/opt-out",
                "twilioCallOptOut",
                "The key pressed after a notification call's opt-out offer (signed)",
                ("Stored; TwiML", None, XML),
                TwilioVoiceForm,
                FORM,
                params=_OUR_IDS,
                security=_SIGNED,
            ),
        ),
        opt_out_for=Channel.VOICE,
    ),
    # Meta posts statuses to the app's one webhook, not to a per-message URL.
    Webhook(
        lambda c: WhatsAppWebhook(c.whatsapp.app_secret, c.whatsapp.verify_token),
        (
            hook_endpoint(
                "GET",
                "/webhooks/whatsapp",
                "whatsappVerify",
                "Meta's subscription check: echoes hub.challenge",
                ("The challenge", None, TEXT),
                params=(
                    Param("hub.mode", "query", _STRING),
                    Param("hub.verify_token", "query", _STRING),
                    Param("hub.challenge", "query", _STRING),
                ),
                error_statuses=(400, 403),
            ),
            hook_endpoint(
                "POST",
                "/webhooks/whatsapp",
                "whatsappWebhook",
                "WhatsApp Cloud API messages and statuses (X-Hub-Signature-256)",
                ("Stored", Received, JSON),
                WhatsAppWebhookBody,
            ),
        ),
        status_for=Channel.WHATSAPP,
    ),
    Webhook(
        lambda c: RbmWebhook(c.rbm.client_token),
        (
            hook_endpoint(
                "POST",
                "/webhooks/rcs",
                "rbmWebhook",
                "Google RBM verification, messages and events (X-Goog-Signature)",
                ("Stored (or the verification secret as text)", None, TEXT),
                RbmWebhookBody,
            ),
        ),
    ),
    Webhook(
        lambda c: SendGridInboundWebhook(c.email.inbound_secret),
        (
            hook_endpoint(
                "POST",
                "/webhooks/email/inbound",
                "emailInbound",
                "An email, as SendGrid Inbound Parse posts it (secret in ?secret= or basic auth)",
                ("Stored", InboundEmailReceived, JSON),
                SendGridInboundForm,
                MULTIPART,
                params=(Param("secret", "query", _STRING, "The inbound parse secret"),),
            ),
        ),
    ),
)


class UnknownWebhook(LookupError):
    """No provider webhook is served at this path."""


def adapter_for(path: str, config: Config) -> InboundAdapter:
    """The adapter serving ``path``; UnknownWebhook names the path when there is none."""
    for webhook in WEBHOOKS:
        if webhook.path == path:
            return webhook.adapter(config)
    raise UnknownWebhook(f"no provider webhook at {path!r}; registered: {[w.path for w in WEBHOOKS]}")


def webhook_routes(config: Config) -> Endpoints:
    """One route per webhook and method, each served by the generic handler with its adapter."""
    routes = Endpoints()
    for webhook in WEBHOOKS:
        handler = webhook_handler(webhook.adapter(config))
        for endpoint in webhook.endpoints:
            routes.add(endpoint, handler)
    return routes


def status_callbacks(public_url: str) -> StatusCallbacks:
    """The status callback URL of each channel, as this gateway serves them."""
    urls = {w.status_for: public_url + w.path for w in WEBHOOKS if w.status_for is not None}
    opt_outs = {w.opt_out_for: public_url + w.path for w in WEBHOOKS if w.opt_out_for is not None}
    opt_outs[Channel.EMAIL] = public_url + UNSUBSCRIBE_PATH
    return StatusCallbacks(urls, opt_outs)
