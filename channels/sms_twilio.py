"""SMS over Twilio Programmable Messaging: inbound webhook, status callbacks, sending."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlencode

import aiohttp
import msgspec

from channels.base import InvalidPayload, SendResult
from channels.http import request_provider
from channels.inbound import ByCustomer, InboundEntry, Parsed, WebhookRequest, read_form
from channels.twilio_webhook import TwilioWebhook, callback_ids, twiml_reply
from conversations.config import TwilioConfig
from conversations.models import (
    Channel,
    InboundMessage,
    Media,
    MessageStatus,
    OutboxJob,
    StatusUpdate,
)
from conversations.normalize import InvalidIdentifier, phone_identifier

PROVIDER = "twilio"
TWILIO_API_BASE = "https://api.twilio.com"
MAX_MEDIA = 10

_STATUS_MAP = {
    "accepted": MessageStatus.QUEUED,
    "scheduled": MessageStatus.QUEUED,
    "queued": MessageStatus.QUEUED,
    "sending": MessageStatus.SENDING,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
    "receiving": MessageStatus.RECEIVED,
    "received": MessageStatus.RECEIVED,
}


class TwilioInboundForm(msgspec.Struct):
    """The form Twilio posts for an inbound SMS/MMS/WhatsApp message (the fields we read).

    One of MessageSid, SmsMessageSid or SmsSid names the message; media come as
    ``MediaUrl{i}``/``MediaContentType{i}`` for i below NumMedia.
    """

    From: str
    MessageSid: str = ""
    SmsMessageSid: str = ""
    SmsSid: str = ""
    To: str = ""
    Body: str = ""
    NumMedia: str = "0"
    ProfileName: str = ""
    ButtonText: str = ""
    ButtonPayload: str = ""


class TwilioStatusForm(msgspec.Struct):
    """The form Twilio posts as a message status callback (MessageStatus or, older, SmsStatus)."""

    MessageSid: str = ""
    SmsSid: str = ""
    MessageStatus: Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(_STATUS_MAP)})] = ""
    SmsStatus: str = ""
    To: str = ""
    ErrorCode: str = ""


def map_status(provider_status: str) -> MessageStatus:
    """Twilio's MessageStatus onto ours; unknown values are a payload error."""
    try:
        return _STATUS_MAP[provider_status.strip().lower()]
    except KeyError:
        raise InvalidPayload(f"unknown MessageStatus {provider_status!r}", "MessageStatus") from None


def channel_of(address: str) -> Channel:
    """Twilio marks WhatsApp addresses with a ``whatsapp:`` scheme."""
    return Channel.WHATSAPP if address.lower().startswith("whatsapp:") else Channel.SMS


def parse_inbound(form: Mapping[str, str], received_at: float) -> InboundMessage:
    """An inbound Twilio message webhook (SMS, MMS or WhatsApp-via-Twilio) as an InboundMessage."""
    fields = read_form(form, TwilioInboundForm)
    message_sid = fields.MessageSid or fields.SmsMessageSid or fields.SmsSid
    if not message_sid:
        raise InvalidPayload("missing field MessageSid", "MessageSid")
    if not fields.From:
        raise InvalidPayload("missing field From", "From")
    try:
        sender = phone_identifier(fields.From)
    except InvalidIdentifier as exc:
        raise InvalidPayload(str(exc), "From") from exc
    try:
        num_media = min(int(fields.NumMedia or 0), MAX_MEDIA)
    except ValueError:
        raise InvalidPayload("NumMedia is not a number", "NumMedia") from None
    media = tuple(
        Media(url=form[f"MediaUrl{i}"], content_type=form.get(f"MediaContentType{i}", ""))
        for i in range(num_media)
        if form.get(f"MediaUrl{i}")
    )
    return InboundMessage(
        channel=channel_of(fields.From),
        provider=PROVIDER,
        provider_message_id=message_sid,
        sender=sender,
        recipient=fields.To,
        # A tapped WhatsApp quick-reply button carries its label in ButtonText (Body holds it too).
        body=fields.Body or fields.ButtonText,
        received_at=received_at,
        media=media,
        profile_name=fields.ProfileName,
        reply_payload=fields.ButtonPayload,
    )


def parse_status(form: Mapping[str, str], message_id: str, customer_id: str, at: float) -> StatusUpdate:
    """A Twilio message status callback as a StatusUpdate for our message ``message_id``."""
    fields = read_form(form, TwilioStatusForm)
    message_sid = fields.MessageSid or fields.SmsSid
    if not message_sid:
        raise InvalidPayload("missing field MessageSid", "MessageSid")
    provider_status = fields.MessageStatus or fields.SmsStatus
    if not provider_status:
        raise InvalidPayload("missing field MessageStatus", "MessageStatus")
    return StatusUpdate(
        channel=channel_of(fields.To),
        provider=PROVIDER,
        provider_message_id=message_sid,
        message_id=message_id,
        customer_id=customer_id,
        status=map_status(provider_status),
        provider_status=provider_status,
        at=at,
        error_code=fields.ErrorCode,
    )


class TwilioMessageWebhook(TwilioWebhook):
    """Inbound messages: each lands once per MessageSid on the sender's shard; empty TwiML back."""

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        entry = parse_inbound(request.form, now)
        return Parsed(
            [InboundEntry(entry, f"twilio:msg:{entry.provider_message_id}", entry.sender)], twiml_reply()
        )


class TwilioMessageStatusWebhook(TwilioWebhook):
    """Status callbacks for our messages: our ids ride in the callback URL's query."""

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        message_id, customer_id = callback_ids(request)
        entry = parse_status(request.form, message_id, customer_id, now)
        dedupe = f"twilio:status:{entry.provider_message_id}:{entry.provider_status}"
        return Parsed([InboundEntry(entry, dedupe, ByCustomer(customer_id))], twiml_reply())


class _TwilioError(msgspec.Struct):
    code: int | str | None = None
    message: str = ""


class _TwilioMessage(msgspec.Struct):
    sid: str
    status: str = "queued"
    num_segments: str | int | None = None
    price: str | float | None = None


_decode_error = msgspec.json.Decoder(_TwilioError).decode
_decode_message = msgspec.json.Decoder(_TwilioMessage).decode


def read_twilio_error(body: bytes) -> tuple[str, str]:
    """Twilio's REST error body ``{"code": 21610, "message": …}`` as (code, message)."""
    try:
        error = _decode_error(body)
    except msgspec.DecodeError:
        return "", body[:200].decode(errors="replace")
    return ("" if error.code is None else str(error.code)), error.message


def _to_int(value: str | int | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _to_price(value: str | float | None) -> float | None:
    try:
        return abs(float(value)) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class TwilioSmsSender:
    """Sends SMS through Twilio's Messages API (or the simulator speaking it)."""

    channel = Channel.SMS
    provider = PROVIDER

    def __init__(self, session: aiohttp.ClientSession, config: TwilioConfig, base_url: str) -> None:
        self._session = session
        self._config = config
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{config.account_sid}/Messages.json"
        # The form goes out as ready bytes with a header built once: aiohttp's FormData and
        # BasicAuth encoding per call cost ~5 % of a shard's time per outbound message.
        self._headers = {
            "Authorization": aiohttp.BasicAuth(config.account_sid, config.auth_token).encode(),
            "Content-Type": "application/x-www-form-urlencoded",
        }

    async def send(self, job: OutboxJob, status_callback_url: str) -> SendResult:
        form = {"To": job.address, "Body": job.body, "StatusCallback": status_callback_url}
        if self._config.messaging_service_sid:
            form["MessagingServiceSid"] = self._config.messaging_service_sid
        else:
            form["From"] = self._config.from_number
        body = await request_provider(
            self._session,
            "POST",
            self._url,
            data=urlencode(form).encode(),
            headers=self._headers,
            read_error=read_twilio_error,
        )
        message = _decode_message(body)
        return SendResult(
            provider=PROVIDER,
            provider_message_id=message.sid,
            status=_STATUS_MAP.get(message.status, MessageStatus.QUEUED),
            segments=_to_int(message.num_segments, 1),
            price=_to_price(message.price),
        )
