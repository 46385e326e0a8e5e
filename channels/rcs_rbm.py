"""RCS over Google RCS Business Messaging (RBM): webhook, capability check, sending.

Inbound, RBM posts a Pub/Sub push envelope whose ``message.data`` is a base64 UserMessage or
UserEvent, signed with ``X-Goog-Signature`` = base64(HMAC-SHA512(clientToken, decoded data)).
Outbound, a send first asks whether the phone can receive RCS (cached per number); when it
cannot, or RBM answers 404, the send fails with ``rcs_not_capable`` and routing's chain moves on
(to the SMS step of a message pinned to RCS, with the card adapted by ``rcs_render``), so SMS
consent, caps and quiet hours are checked like for any SMS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from datetime import datetime

import aiohttp
import msgspec

from channels.base import ChannelUnreachable, InvalidPayload, ProviderError, SendResult, WebhookRejected
from channels.http import request_provider
from channels.inbound import InboundAdapter, InboundEntry, Parsed, WebhookReply, WebhookRequest
from channels.rcs_render import rbm_message_id, render_agent_message
from conversations.capabilities import CapabilityCache
from conversations.config import RbmConfig
from conversations.models import (
    Channel,
    InboundMessage,
    Media,
    MessageStatus,
    OutboxJob,
    StatusUpdate,
)
from conversations.normalize import InvalidIdentifier, phone_identifier

PROVIDER = "rbm"
RBM_API_BASE = "https://rcsbusinessmessaging.googleapis.com"
NOT_CAPABLE = "rcs_not_capable"
_STATUS_EVENTS = {"DELIVERED": MessageStatus.DELIVERED, "READ": MessageStatus.READ}
_IGNORED_EVENTS = frozenset({"IS_TYPING", "SUBSCRIBE", "UNSUBSCRIBE"})


# --- webhook wire format ---------------------------------------------------------------


class PubSubMessage(msgspec.Struct, rename="camel"):
    """The Pub/Sub message inside a push: ``data`` is base64 JSON."""

    data: str
    message_id: str = ""
    publish_time: str = ""


class RbmWebhookBody(msgspec.Struct, rename="camel"):
    """Either the one-time verification (clientToken + secret) or an event push."""

    client_token: str | None = None
    secret: str | None = None
    message: PubSubMessage | None = None
    subscription: str = ""

    @property
    def is_verification(self) -> bool:
        return self.client_token is not None and self.secret is not None and self.message is None


class SuggestionResponse(msgspec.Struct, rename="camel"):
    postback_data: str = ""
    text: str = ""
    type: str = ""


class LatLng(msgspec.Struct):
    latitude: float = 0.0
    longitude: float = 0.0


class FileInfo(msgspec.Struct, rename="camel"):
    mime_type: str = ""
    file_size_bytes: int = 0
    file_name: str = ""
    file_uri: str = ""


class UserFile(msgspec.Struct):
    payload: FileInfo | None = None
    thumbnail: FileInfo | None = None
    category: str = ""


class RbmEvent(msgspec.Struct, rename="camel"):
    """A decoded UserMessage (has content) or UserEvent (has ``eventType``)."""

    sender_phone_number: str = ""
    message_id: str = ""
    send_time: str = ""
    agent_id: str = ""
    text: str | None = None
    suggestion_response: SuggestionResponse | None = None
    location: LatLng | None = None
    user_file: UserFile | None = None
    event_type: str = ""
    event_id: str = ""


_decode_body = msgspec.json.Decoder(RbmWebhookBody).decode
_decode_event = msgspec.json.Decoder(RbmEvent).decode


def compute_signature(client_token: str, data: bytes) -> str:
    """The X-Goog-Signature RBM sends for this decoded ``message.data``."""
    digest = hmac.new(client_token.encode(), data, hashlib.sha512).digest()
    return base64.b64encode(digest).decode()


def is_valid_signature(client_token: str, data: bytes, signature: str | None) -> bool:
    """Constant-time check of X-Goog-Signature."""
    if not client_token or not signature:
        return False
    return hmac.compare_digest(compute_signature(client_token, data).encode(), signature.strip().encode())


def is_valid_client_token(expected: str, received: str) -> bool:
    """Constant-time check of the clientToken in a verification request."""
    return bool(expected) and hmac.compare_digest(expected.encode(), received.encode())


def decode_webhook(body: bytes) -> RbmWebhookBody:
    """The webhook body; InvalidPayload when it is neither a verification nor an event push."""
    try:
        decoded = _decode_body(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidPayload(f"not an RBM webhook body: {exc}") from exc
    if not decoded.is_verification and decoded.message is None:
        raise InvalidPayload("body has neither clientToken/secret nor message", "message")
    return decoded


def event_data(envelope: RbmWebhookBody) -> bytes:
    """The base64-decoded ``message.data`` of an event push (what the signature covers)."""
    if envelope.message is None:
        raise InvalidPayload("missing message", "message")
    try:
        return base64.b64decode(envelope.message.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPayload("message.data is not base64", "message.data") from exc


def _timestamp(value: str, default: float) -> float:
    if not value:
        return default
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise InvalidPayload(f"not an RFC 3339 time: {value!r}", "sendTime") from None


def parse_event(data: bytes, received_at: float) -> InboundMessage | StatusUpdate | None:
    """A decoded UserMessage/UserEvent as an ingest entry; None for events we ignore (IS_TYPING)."""
    try:
        event = _decode_event(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidPayload(f"message.data is not a UserMessage or UserEvent: {exc}") from exc
    if event.event_type in _IGNORED_EVENTS:
        return None
    try:
        sender = phone_identifier(event.sender_phone_number)
    except InvalidIdentifier as exc:
        raise InvalidPayload(str(exc), "senderPhoneNumber") from exc
    if not event.message_id:
        raise InvalidPayload("missing messageId", "messageId")
    at = _timestamp(event.send_time, received_at)
    if event.event_type:
        status = _STATUS_EVENTS.get(event.event_type)
        if status is None:
            raise InvalidPayload(f"unknown eventType {event.event_type!r}", "eventType")
        return StatusUpdate(
            channel=Channel.RCS,
            provider=PROVIDER,
            provider_message_id=event.message_id,
            status=status,
            provider_status=event.event_type,
            at=at,
            recipient=sender,
        )
    body, media, attributes = _content(event)
    return InboundMessage(
        channel=Channel.RCS,
        provider=PROVIDER,
        provider_message_id=event.message_id,
        sender=sender,
        recipient=event.agent_id,
        body=body,
        received_at=at,
        media=media,
        attributes=attributes,
    )


def _content(event: RbmEvent) -> tuple[str, tuple[Media, ...], dict[str, str]]:
    """(body, media, attributes) of a UserMessage, whichever kind of content it carries."""
    if event.text is not None:
        return event.text, (), {}
    if event.suggestion_response is not None:
        reply = event.suggestion_response
        attributes = {"postback_data": reply.postback_data}
        if reply.type:
            attributes["suggestion_type"] = reply.type
        return reply.text, (), attributes
    if event.location is not None:
        lat, lng = event.location.latitude, event.location.longitude
        # An RFC 5870 geo URI: readable in the thread and parseable by anything downstream.
        return f"geo:{lat},{lng}", (), {"latitude": repr(lat), "longitude": repr(lng)}
    if event.user_file is not None and event.user_file.payload is not None:
        file = event.user_file.payload
        attributes = {"file_name": file.file_name, "file_size_bytes": str(file.file_size_bytes)}
        if event.user_file.thumbnail is not None and event.user_file.thumbnail.file_uri:
            attributes["thumbnail_url"] = event.user_file.thumbnail.file_uri
        return file.file_name, (Media(url=file.file_uri, content_type=file.mime_type),), attributes
    raise InvalidPayload("UserMessage carries no text, suggestionResponse, location or userFile")


class RbmWebhook(InboundAdapter):
    """RBM's one-time URL verification (clientToken echoed with the secret), then signed events.

    A message lands once per RBM message id on the sender's shard; a status once per id and
    event on the phone's shard, which finds our message by RBM's id.
    """

    provider = PROVIDER

    def __init__(self, client_token: str) -> None:
        self._client_token = client_token

    def verify(self, request: WebhookRequest) -> None:
        body = decode_webhook(request.body)
        if body.is_verification:
            if not is_valid_client_token(self._client_token, body.client_token or ""):
                raise WebhookRejected(
                    "client_token_invalid", "clientToken does not match this agent's webhook"
                )
            return
        signature = request.headers.get("X-Goog-Signature")
        if not is_valid_signature(self._client_token, event_data(body), signature):
            code = "signature_missing" if not signature else "signature_invalid"
            raise WebhookRejected(code, "X-Goog-Signature is missing or does not match message.data")

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        body = decode_webhook(request.body)
        if body.is_verification:
            return Parsed(reply=WebhookReply((body.secret or "").encode()))
        entry = parse_event(event_data(body), now)
        if entry is None:  # IS_TYPING and the like: acknowledged, nothing to keep
            return Parsed()
        if isinstance(entry, InboundMessage):
            return Parsed([InboundEntry(entry, f"rbm:msg:{entry.provider_message_id}", entry.sender)])
        assert entry.recipient is not None  # parse_event sets it from senderPhoneNumber
        dedupe = f"rbm:status:{entry.provider_message_id}:{entry.provider_status}"
        return Parsed([InboundEntry(entry, dedupe, entry.recipient)])


# --- sending -----------------------------------------------------------------------------


class _GoogleErrorBody(msgspec.Struct):
    code: int = 0
    message: str = ""
    status: str = ""


class _GoogleError(msgspec.Struct):
    error: _GoogleErrorBody


class _Capabilities(msgspec.Struct, rename="camel"):
    features: list[str] = msgspec.field(default_factory=list)
    rbm_enabled: bool = True


_decode_google_error = msgspec.json.Decoder(_GoogleError).decode
_decode_capabilities = msgspec.json.Decoder(_Capabilities).decode
_encode = msgspec.json.Encoder().encode
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def read_google_error(body: bytes) -> tuple[str, str]:
    """Google's ``{"error": {"code", "message", "status"}}`` as (status, message)."""
    try:
        error = _decode_google_error(body).error
    except (msgspec.ValidationError, msgspec.DecodeError):
        return "", body[:200].decode(errors="replace")
    return error.status or (str(error.code) if error.code else ""), error.message


class RbmSender:
    """Sends RCS through the RBM API (or the simulator speaking it), adapting to SMS when needed."""

    channel = Channel.RCS
    provider = PROVIDER

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: RbmConfig,
        base_url: str,
        capabilities: CapabilityCache | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._base = base_url.rstrip("/")
        self._capabilities = capabilities
        self._headers = {"Authorization": f"Bearer {config.access_token}"}

    async def is_capable(self, phone: str) -> bool:
        """Whether the phone can receive RCS from our agent (cached per number)."""
        if self._capabilities is not None:
            cached = await self._capabilities.get(Channel.RCS, phone)
            if cached is not None:
                return cached
        params = {"requestId": str(uuid.uuid4()), "agentId": self._config.agent_id}
        try:
            body = await request_provider(
                self._session,
                "GET",
                f"{self._base}/v1/phones/{phone}/capabilities",
                params=params,
                headers=self._headers,
                read_error=read_google_error,
            )
            capable = _decode_capabilities(body).rbm_enabled
        except ProviderError as exc:
            if exc.http_status != 404:
                raise
            capable = False  # RBM's answer for "this phone cannot receive RCS"
        except (msgspec.ValidationError, msgspec.DecodeError):
            capable = True  # a 200 is the capability; an odd body does not change that
        await self._remember(phone, capable)
        return capable

    async def _remember(self, phone: str, capable: bool) -> None:
        if self._capabilities is not None:
            await self._capabilities.set(Channel.RCS, phone, capable)

    @staticmethod
    def _unreachable(job: OutboxJob, why: str) -> ChannelUnreachable:
        return ChannelUnreachable(why, code=NOT_CAPABLE)

    async def send(self, job: OutboxJob, status_callback_url: str) -> SendResult:
        """RBM reports statuses to the webhook, not per message, so the callback URL is unused."""
        if not _E164.match(job.address):
            raise ProviderError(f"not an E.164 number: {job.address!r}", code="invalid_address")
        if not await self.is_capable(job.address):
            raise self._unreachable(job, "the phone cannot receive RCS (capability check)")
        rbm_id = rbm_message_id(job.message_id)
        try:
            await request_provider(
                self._session,
                "POST",
                f"{self._base}/v1/phones/{job.address}/agentMessages",
                params={"messageId": rbm_id, "agentId": self._config.agent_id},
                data=_encode(render_agent_message(job)),
                headers={**self._headers, "Content-Type": "application/json"},
                read_error=read_google_error,
            )
        except ProviderError as exc:
            if exc.http_status != 404:
                raise
            # The cached capability was stale: remember the truth for the next sends.
            await self._remember(job.address, False)
            raise self._unreachable(job, "RBM answered 404: the phone is not reachable over RCS") from exc
        return SendResult(
            provider=PROVIDER, provider_message_id=rbm_id, status=MessageStatus.SENT, segments=0
        )
