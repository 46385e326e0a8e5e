"""Assembling the senders for a configuration, and the status-callback URL each one asks for."""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp

from channels.base import Sender
from channels.email_smtp import EmailSender
from channels.rcs_rbm import RBM_API_BASE, RbmSender
from channels.sms_twilio import TWILIO_API_BASE, TwilioSmsSender
from channels.voice_twilio import TwilioVoiceSender
from channels.whatsapp_cloud import WhatsAppCloudSender
from conversations.capabilities import CapabilityCache
from conversations.config import Config
from conversations.models import Channel, OutboxJob

# RCS has none: RBM reports statuses to /webhooks/rcs; its SMS fallback is an SMS job.
STATUS_CALLBACK_PATHS = {
    Channel.SMS: "/webhooks/twilio/sms/status",
    Channel.VOICE: "/webhooks/twilio/voice/status",
    Channel.WHATSAPP: "/webhooks/whatsapp",  # Meta posts to the app's webhook; kept for the record
}


def build_senders(
    session: aiohttp.ClientSession, config: Config, capabilities: CapabilityCache | None = None
) -> dict[Channel, Sender]:
    """One sender per configured channel (RCS only with an RBM agent id, WhatsApp only with
    credentials, email only with an SMTP server: never a half-set one)."""
    twilio_base = config.twilio.base_url or TWILIO_API_BASE
    senders: dict[Channel, Sender] = {
        Channel.SMS: TwilioSmsSender(session, config.twilio, twilio_base),
        Channel.VOICE: TwilioVoiceSender(session, config.twilio, config.voice, twilio_base),
    }
    if config.rbm.agent_id:
        rbm_base = config.rbm.base_url or RBM_API_BASE
        senders[Channel.RCS] = RbmSender(session, config.rbm, rbm_base, capabilities)
    if config.whatsapp.has_credentials:
        senders[Channel.WHATSAPP] = WhatsAppCloudSender(session, config.whatsapp)
    if config.email.smtp_url:
        senders[Channel.EMAIL] = EmailSender(config.email)
    return senders


def status_callback_url(config: Config, job: OutboxJob) -> str:
    """Where the provider reports this job's statuses; it names our message and customer."""
    path = STATUS_CALLBACK_PATHS.get(job.channel, "/webhooks/twilio/sms/status")
    query = urlencode({"mid": job.message_id, "cid": job.customer_id})
    return f"{config.public_url}{path}?{query}"


def enabled_channels(config: Config) -> frozenset[Channel]:
    """The channels a message can be sent on with this configuration (those with a sender).

    Mirrors the conditions of ``build_senders`` without building any client.
    """
    channels = {Channel.SMS, Channel.VOICE}
    if config.rbm.agent_id:
        channels.add(Channel.RCS)
    if config.whatsapp.has_credentials:
        channels.add(Channel.WHATSAPP)
    if config.email.smtp_url:
        channels.add(Channel.EMAIL)
    return frozenset(channels)
