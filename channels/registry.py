"""Assembling the senders for a configuration, and the status-callback URL each one asks for."""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp
import msgspec

from channels.base import Sender
from channels.email_smtp import EmailSender
from channels.rcs_rbm import RBM_API_BASE, RbmSender
from channels.sms_twilio import TWILIO_API_BASE, TwilioSmsSender
from channels.voice_twilio import TwilioVoiceSender
from channels.whatsapp_cloud import WhatsAppCloudSender
from conversations.capabilities import CapabilityCache
from conversations.config import Config
from conversations.models import Channel, OutboxJob


class StatusCallbacks(msgspec.Struct, frozen=True):
    """Where providers report statuses, per channel: the gateway serves these URLs and says so.

    RCS has none (RBM reports to the app's one webhook; its SMS fallback is an SMS job), so
    channels without one get SMS's, as before.
    """

    urls: dict[Channel, str]
    # Where a customer opts out in one step, per channel: the email unsubscribe page's base
    # (a token follows) and the notification call's opt-out key action.
    opt_out_urls: dict[Channel, str] = msgspec.field(default_factory=dict)

    def url(self, job: OutboxJob) -> str:
        """Where the provider reports this job's statuses; it names our message and customer."""
        base = self.urls.get(job.channel) or self.urls.get(Channel.SMS, "")
        query = urlencode({"mid": job.message_id, "cid": job.customer_id})
        return f"{base}?{query}"


def build_senders(
    session: aiohttp.ClientSession, config: Config, capabilities: CapabilityCache | None = None
) -> dict[Channel, Sender]:
    """One sender per configured channel (SMS and voice only with Twilio credentials, RCS only
    with an RBM agent id, WhatsApp only with credentials, email only with an SMTP server: never a
    half-set one)."""
    senders: dict[Channel, Sender] = {}
    if _has_twilio(config):
        twilio_base = config.twilio.base_url or TWILIO_API_BASE
        senders[Channel.SMS] = TwilioSmsSender(session, config.twilio, twilio_base)
        senders[Channel.VOICE] = TwilioVoiceSender(session, config.twilio, config.voice, twilio_base)
    if config.rbm.agent_id:
        rbm_base = config.rbm.base_url or RBM_API_BASE
        senders[Channel.RCS] = RbmSender(session, config.rbm, rbm_base, capabilities)
    if config.whatsapp.has_credentials:
        senders[Channel.WHATSAPP] = WhatsAppCloudSender(session, config.whatsapp)
    if config.email.smtp_url:
        senders[Channel.EMAIL] = EmailSender(config.email)
    return senders


def enabled_channels(config: Config) -> frozenset[Channel]:
    """The channels a message can be sent on with this configuration (those with a sender).

    Mirrors the conditions of ``build_senders`` without building any client.
    """
    channels = {Channel.SMS, Channel.VOICE} if _has_twilio(config) else set()
    if config.rbm.agent_id:
        channels.add(Channel.RCS)
    if config.whatsapp.has_credentials:
        channels.add(Channel.WHATSAPP)
    if config.email.smtp_url:
        channels.add(Channel.EMAIL)
    return frozenset(channels)


def _has_twilio(config: Config) -> bool:
    # Without credentials every send would fail at Twilio: the channels are off instead.
    return bool(config.twilio.account_sid and config.twilio.auth_token)
