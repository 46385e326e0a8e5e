"""Assembling the senders for a configuration, and the status-callback URL each one asks for."""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp

from channels.base import Sender
from channels.sms_twilio import TWILIO_API_BASE, TwilioSmsSender
from conversations.config import Config
from conversations.models import Channel, OutboxJob

STATUS_CALLBACK_PATHS = {
    Channel.SMS: "/webhooks/twilio/sms/status",
}


def build_senders(session: aiohttp.ClientSession, config: Config) -> dict[Channel, Sender]:
    """One sender per configured channel."""
    return {
        Channel.SMS: TwilioSmsSender(session, config.twilio, config.twilio.base_url or TWILIO_API_BASE),
    }


def status_callback_url(config: Config, job: OutboxJob) -> str:
    """Where the provider reports this job's statuses; it names our message and customer."""
    path = STATUS_CALLBACK_PATHS.get(job.channel, "/webhooks/twilio/sms/status")
    query = urlencode({"mid": job.message_id, "cid": job.customer_id})
    return f"{config.public_url}{path}?{query}"


def enabled_channels(config: Config) -> frozenset[Channel]:
    """The channels a message can be sent on with this configuration (those with a sender)."""
    return frozenset({Channel.SMS})
