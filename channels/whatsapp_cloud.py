"""WhatsApp over Meta's Cloud API: signed webhooks (messages and statuses, batched) and sending.

One webhook POST may carry several entries, each with several changes, each holding
``messages[]`` and ``statuses[]``; the whole body is parsed into our ingest entries at once.
Customers are identified by their PHONE identifier (wa_id ``15551234567`` → ``+15551234567``)
so a person is one customer on SMS and WhatsApp alike.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence

import aiohttp
import msgspec

from channels.base import InvalidPayload, ProviderError, SendResult, WebhookRejected
from channels.http import request_provider
from channels.inbound import (
    AnyShard,
    InboundAdapter,
    InboundEntry,
    Parsed,
    ShardKey,
    WebhookReply,
    WebhookRequest,
)
from conversations.config import WhatsAppConfig
from conversations.models import (
    Channel,
    ConsentRequest,
    Identifier,
    InboundMessage,
    Location,
    Media,
    MessageStatus,
    OutboxJob,
    StatusUpdate,
    TemplateRef,
)
from conversations.normalize import InvalidIdentifier, phone_identifier

log = logging.getLogger(__name__)

PROVIDER = "meta"
GRAPH_API_BASE = "https://graph.facebook.com"
SIGNATURE_HEADER = "X-Hub-Signature-256"
WEBHOOK_OBJECT = "whatsapp_business_account"

# Graph error codes worth another try: throttling and temporary unavailability. Everything
# else (131026 undeliverable, 131047 outside the window, 190 bad token, 132xxx template
# problems, …) is a final answer.
RETRYABLE_CODES = frozenset({"1", "2", "4", "80007", "130429", "131016", "131056", "133004"})
PAIR_RATE_LIMIT = "131056"
PAIR_RATE_DELAY = 6.0  # Meta allows about one message per 6 s to the same recipient

_STATUS_MAP = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}


# --- the webhook's wire format ------------------------------------------------------------


class _Profile(msgspec.Struct):
    name: str = ""


class _Contact(msgspec.Struct):
    wa_id: str = ""
    profile: _Profile | None = None


class _Metadata(msgspec.Struct):
    display_phone_number: str = ""
    phone_number_id: str = ""


class _Text(msgspec.Struct):
    body: str = ""


class _Reply(msgspec.Struct):
    id: str = ""
    title: str = ""
    description: str = ""


class _Interactive(msgspec.Struct):
    type: str = ""
    button_reply: _Reply | None = None
    list_reply: _Reply | None = None


class _Button(msgspec.Struct):
    text: str = ""
    payload: str = ""


class _MediaObject(msgspec.Struct):
    id: str = ""
    mime_type: str = ""
    caption: str = ""
    filename: str = ""
    url: str = ""  # newer API versions include a download URL beside the id


class _LocationObject(msgspec.Struct):
    latitude: float | None = None
    longitude: float | None = None
    name: str = ""
    address: str = ""


class _Message(msgspec.Struct):
    id: str
    type: str
    from_: str = msgspec.field(default="", name="from")
    timestamp: str | int = ""
    text: _Text | None = None
    interactive: _Interactive | None = None
    button: _Button | None = None
    image: _MediaObject | None = None
    video: _MediaObject | None = None
    audio: _MediaObject | None = None
    document: _MediaObject | None = None
    sticker: _MediaObject | None = None
    location: _LocationObject | None = None


class _ErrorData(msgspec.Struct):
    details: str = ""


class _Error(msgspec.Struct):
    code: int | str | None = None
    title: str = ""
    message: str = ""
    error_data: _ErrorData | None = None


class _Status(msgspec.Struct):
    id: str
    status: str
    timestamp: str | int = ""
    recipient_id: str = ""
    errors: list[_Error] = msgspec.field(default_factory=list)


class _UserPreference(msgspec.Struct):
    """A ``user_preferences`` change: the user stopped or resumed marketing messages in WhatsApp."""

    wa_id: str
    category: str = ""
    value: str = ""
    detail: str = ""
    timestamp: str | int = ""


class _Value(msgspec.Struct):
    metadata: _Metadata | None = None
    contacts: list[_Contact] = msgspec.field(default_factory=list)
    messages: list[_Message] = msgspec.field(default_factory=list)
    statuses: list[_Status] = msgspec.field(default_factory=list)
    user_preferences: list[_UserPreference] = msgspec.field(default_factory=list)
    errors: list[_Error] = msgspec.field(default_factory=list)  # system or account-level problems


class _Change(msgspec.Struct):
    value: _Value
    field: str = "messages"


class _Entry(msgspec.Struct):
    id: str = ""
    changes: list[_Change] = msgspec.field(default_factory=list)


class WhatsAppWebhookBody(msgspec.Struct):
    """A Cloud API webhook POST body, as much of it as Threadline reads."""

    object: str
    entry: list[_Entry]


decode_webhook = msgspec.json.Decoder(WhatsAppWebhookBody).decode


class ParsedWebhook(msgspec.Struct):
    """Everything one webhook POST carried, in payload order; ``skipped`` says what was left out."""

    messages: list[InboundMessage] = msgspec.field(default_factory=list)
    statuses: list[StatusUpdate] = msgspec.field(default_factory=list)
    consent: list[ConsentRequest] = msgspec.field(default_factory=list)
    skipped: list[str] = msgspec.field(default_factory=list)


# --- signatures -----------------------------------------------------------------------------


def compute_signature(app_secret: str, raw_body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for this body."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def is_valid_signature(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """Constant-time check of ``sha256=<hex>`` over the raw bytes (never re-serialised JSON)."""
    if not app_secret or not header:
        return False
    scheme, _, received = header.strip().partition("=")
    if scheme.lower() != "sha256":
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), received.strip().lower().encode())


# --- inbound --------------------------------------------------------------------------------


class _Content(msgspec.Struct, frozen=True):
    body: str = ""
    media: tuple[Media, ...] = ()
    location: Location | None = None
    reply_payload: str = ""


def _text(message: _Message) -> _Content:
    return _Content(body=message.text.body if message.text else "")


def _interactive(message: _Message) -> _Content:
    interactive = message.interactive or _Interactive()
    replies = {"button_reply": interactive.button_reply, "list_reply": interactive.list_reply}
    reply = replies.get(interactive.type)
    if reply is None:
        raise InvalidPayload(f"unsupported interactive type {interactive.type!r}", "interactive.type")
    return _Content(body=reply.title, reply_payload=reply.id)


def _button(message: _Message) -> _Content:
    button = message.button or _Button()
    return _Content(body=button.text, reply_payload=button.payload)


def _media(message: _Message) -> _Content:
    obj: _MediaObject | None = getattr(message, message.type)
    if obj is None or not (obj.id or obj.url):
        raise InvalidPayload(f"{message.type} message without a media id", message.type)
    media = Media(url=obj.url, content_type=obj.mime_type, id=obj.id)
    return _Content(body=obj.caption or obj.filename, media=(media,))


def _location(message: _Message) -> _Content:
    place = message.location
    if place is None or place.latitude is None or place.longitude is None:
        raise InvalidPayload("location message without coordinates", "location")
    label = ", ".join(part for part in (place.name, place.address) if part)
    body = (
        f"Location: {label} ({place.latitude}, {place.longitude})"
        if label
        else (f"Location: ({place.latitude}, {place.longitude})")
    )
    location = Location(place.latitude, place.longitude, place.name, place.address)
    return _Content(body=body, location=location)


# The message types that become thread entries; any other type is skipped, by name.
MESSAGE_TYPES: dict[str, Callable[[_Message], _Content]] = {
    "text": _text,
    "interactive": _interactive,
    "button": _button,
    "image": _media,
    "video": _media,
    "audio": _media,
    "document": _media,
    "sticker": _media,
    "location": _location,
}


def wa_id_identifier(wa_id: str) -> Identifier:
    """A wa_id (E.164 digits without ``+``) as the customer's PHONE identifier."""
    digits = wa_id.strip().lstrip("+")
    if not digits.isdigit():
        raise InvalidIdentifier("wa_id", f"not a WhatsApp id: {wa_id!r}")
    return phone_identifier("+" + digits)


def _epoch(value: str | int, fallback: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return fallback
    return seconds if seconds > 0 else fallback


def _profile_name(value: _Value, wa_id: str) -> str:
    for contact in value.contacts:
        if contact.wa_id == wa_id and contact.profile is not None:
            return contact.profile.name
    if len(value.contacts) == 1 and value.contacts[0].profile is not None:
        return value.contacts[0].profile.name
    return ""


def _inbound(message: _Message, value: _Value, now: float) -> InboundMessage:
    parse = MESSAGE_TYPES.get(message.type)
    if parse is None:
        raise InvalidPayload(f"unsupported message type {message.type!r}", "type")
    content = parse(message)
    try:
        sender = wa_id_identifier(message.from_)
    except InvalidIdentifier as exc:
        raise InvalidPayload(str(exc), "from") from exc
    metadata = value.metadata or _Metadata()
    return InboundMessage(
        channel=Channel.WHATSAPP,
        provider=PROVIDER,
        provider_message_id=message.id,
        sender=sender,
        recipient=metadata.display_phone_number or metadata.phone_number_id,
        body=content.body,
        # Meta's own timestamp: the 24-hour window runs from when the customer wrote, even
        # when the webhook reaches us late (Meta retries for days).
        received_at=_epoch(message.timestamp, now),
        media=content.media,
        profile_name=_profile_name(value, message.from_),
        location=content.location,
        reply_payload=content.reply_payload,
    )


def _error_text(error: _Error) -> str:
    text = error.message or error.title
    details = error.error_data.details if error.error_data else ""
    if details and _plain(details) not in _plain(text):  # Meta often repeats the title as details
        text = f"{text}: {details}" if text else details
    return text


def _plain(text: str) -> str:
    return text.strip().rstrip(".").lower()


def _status(status: _Status, now: float) -> StatusUpdate:
    mapped = _STATUS_MAP.get(status.status)
    if mapped is None:
        raise InvalidPayload(f"unsupported status {status.status!r}", "status")
    recipient = None
    if status.recipient_id:
        try:
            recipient = wa_id_identifier(status.recipient_id)
        except InvalidIdentifier as exc:
            raise InvalidPayload(str(exc), "recipient_id") from exc
    error = status.errors[0] if status.errors else None
    return StatusUpdate(
        channel=Channel.WHATSAPP,
        provider=PROVIDER,
        provider_message_id=status.id,
        status=mapped,
        provider_status=status.status,
        at=_epoch(status.timestamp, now),
        recipient=recipient,
        error_code="" if error is None or error.code is None else str(error.code),
        error_message="" if error is None else _error_text(error),
    )


def parse_webhook(body: WhatsAppWebhookBody, now: float) -> ParsedWebhook:
    """Every message and status of one webhook POST.

    An item we cannot use (an unsupported message type, an unknown status, a change of
    another field) is skipped with a reason instead of failing the POST: Meta would retry
    the whole batch for days, and the items we can use would wait with it.
    """
    if body.object != WEBHOOK_OBJECT:
        raise InvalidPayload(f"object must be {WEBHOOK_OBJECT!r}, not {body.object!r}", "object")
    parsed = ParsedWebhook()
    for entry in body.entry:
        for change in entry.changes:
            if change.field == "user_preferences":
                for preference in change.value.user_preferences:
                    try:
                        parsed.consent.append(_consent(preference, now))
                    except InvalidPayload as exc:
                        parsed.skipped.append(f"user preference of {preference.wa_id}: {exc}")
                continue
            if change.field != "messages":
                parsed.skipped.append(f"change of field {change.field!r}")
                continue
            value = change.value
            for error in value.errors:
                parsed.skipped.append(f"error {error.code}: {_error_text(error)}")
            for message in value.messages:
                try:
                    parsed.messages.append(_inbound(message, value, now))
                except InvalidPayload as exc:
                    parsed.skipped.append(f"message {message.id}: {exc}")
            for status in value.statuses:
                try:
                    parsed.statuses.append(_status(status, now))
                except InvalidPayload as exc:
                    parsed.skipped.append(f"status {status.id} {status.status}: {exc}")
    return parsed


MARKETING_PREFERENCE = "marketing_messages"
_PREFERENCE_VALUES = {"stop": True, "resume": False}  # value -> opted out


def _consent(preference: _UserPreference, now: float) -> ConsentRequest:
    """WhatsApp's "stop/resume marketing messages" setting as a marketing opt-out (or back in)."""
    if preference.category != MARKETING_PREFERENCE:
        raise InvalidPayload(f"unknown preference category {preference.category!r}", "category")
    opted_out = _PREFERENCE_VALUES.get(preference.value)
    if opted_out is None:
        raise InvalidPayload(f"unknown preference value {preference.value!r}", "value")
    try:
        customer = wa_id_identifier(preference.wa_id)
    except InvalidIdentifier as exc:
        raise InvalidPayload(str(exc), "wa_id") from exc
    return ConsentRequest(
        customer_id="",
        channel=Channel.WHATSAPP,
        source=f"whatsapp_user_preferences:{preference.value}",
        at=_epoch(preference.timestamp, now),
        message_type="marketing",
        opted_out=opted_out,
        customer=customer,
    )


class Received(msgspec.Struct):
    """What one webhook POST did (Meta ignores the body; it helps people and tests)."""

    messages: int
    statuses: int
    duplicates: int
    skipped: list[str]


def _status_shard(status: StatusUpdate) -> ShardKey:
    """A status goes to its recipient's shard; without one any shard can match the wamid."""
    return status.recipient if status.recipient is not None else AnyShard(status.provider_message_id)


class WhatsAppWebhook(InboundAdapter):
    """Meta's subscription check (GET) and signed, batched message/status POSTs.

    A message lands once per wamid, a status once per wamid and status (Meta retries for days).
    """

    provider = PROVIDER

    def __init__(self, app_secret: str, verify_token: str) -> None:
        self._app_secret = app_secret
        self._verify_token = verify_token

    def verify(self, request: WebhookRequest) -> None:
        if request.method == "GET":
            token = request.query.get("hub.verify_token", "")
            if (
                request.query.get("hub.mode") != "subscribe"
                or not self._verify_token
                or not hmac.compare_digest(token.encode(), self._verify_token.encode())
            ):
                raise WebhookRejected(
                    "verification_failed", "hub.mode must be subscribe with our hub.verify_token"
                )
            return
        signature = request.headers.get(SIGNATURE_HEADER)
        if not is_valid_signature(self._app_secret, request.body, signature):
            code = "signature_missing" if not signature else "signature_invalid"
            raise WebhookRejected(code, f"{SIGNATURE_HEADER} is missing or does not match this body")

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        if request.method == "GET":
            challenge = request.query.get("hub.challenge", "")
            if not challenge:
                raise InvalidPayload("hub.challenge is required", "hub.challenge", code="missing_challenge")
            return Parsed(reply=WebhookReply(challenge.encode(), "text/plain"))
        parsed = parse_webhook(decode_webhook(request.body), now)
        entries = [
            *(InboundEntry(m, f"whatsapp:msg:{m.provider_message_id}", m.sender) for m in parsed.messages),
            *(
                InboundEntry(
                    s, f"whatsapp:status:{s.provider_message_id}:{s.provider_status}", _status_shard(s)
                )
                for s in parsed.statuses
            ),
            *(
                InboundEntry(c, f"whatsapp:pref:{c.customer.value}:{c.at:.0f}:{c.source}", c.customer)
                for c in parsed.consent
                if c.customer is not None
            ),
        ]
        return Parsed(entries, skipped=parsed.skipped)

    def answer(self, parsed: Parsed, fresh: Sequence[bool]) -> WebhookReply:
        if parsed.reply is not None:  # the subscription check's challenge
            return parsed.reply
        messages = sum(1 for item in parsed.entries if isinstance(item.entry, InboundMessage))
        statuses = sum(1 for item in parsed.entries if isinstance(item.entry, StatusUpdate))
        received = Received(messages, statuses, list(fresh).count(False), parsed.skipped)
        return WebhookReply(msgspec.json.encode(received), "application/json")


# --- sending --------------------------------------------------------------------------------


class _OutText(msgspec.Struct):
    body: str
    preview_url: bool = False


class _Parameter(msgspec.Struct):
    type: str
    text: str


class _Component(msgspec.Struct):
    type: str
    parameters: list[_Parameter]


class _Language(msgspec.Struct):
    code: str


class _OutTemplate(msgspec.Struct, omit_defaults=True):
    name: str
    language: _Language
    components: list[_Component] = msgspec.field(default_factory=list)


class SendRequest(msgspec.Struct, omit_defaults=True):
    """The body of ``POST /{version}/{phone_number_id}/messages`` (text or template)."""

    messaging_product: str
    recipient_type: str
    to: str
    type: str
    text: _OutText | None = None
    template: _OutTemplate | None = None


def render_send(job: OutboxJob) -> SendRequest:
    """The Cloud API request for one outbox job: its template when it has one, else text."""
    to = job.address.lstrip("+")
    if job.template is not None:
        return SendRequest("whatsapp", "individual", to, "template", template=_template(job.template))
    return SendRequest("whatsapp", "individual", to, "text", text=_OutText(job.body))


def _template(template: TemplateRef) -> _OutTemplate:
    components = []
    if template.variables:
        parameters = [_Parameter("text", value) for value in template.variables]
        components.append(_Component("body", parameters))
    return _OutTemplate(template.name, _Language(template.language), components)


class _GraphError(msgspec.Struct):
    code: int | str | None = None
    message: str = ""
    error_data: _ErrorData | None = None


class _GraphErrorBody(msgspec.Struct):
    error: _GraphError


class _SentMessage(msgspec.Struct):
    id: str
    message_status: str = "accepted"


class _SendResponse(msgspec.Struct):
    messages: list[_SentMessage] = msgspec.field(default_factory=list)


_decode_error = msgspec.json.Decoder(_GraphErrorBody).decode
_decode_response = msgspec.json.Decoder(_SendResponse).decode
_encode = msgspec.json.Encoder().encode


def read_graph_error(body: bytes) -> tuple[str, str]:
    """Graph's error body ``{"error": {"code": 131047, "message": …}}`` as (code, message)."""
    try:
        error = _decode_error(body).error
    except msgspec.DecodeError:
        return "", body[:200].decode(errors="replace")
    details = error.error_data.details if error.error_data else ""
    message = f"{error.message}: {details}" if details and details not in error.message else error.message
    return ("" if error.code is None else str(error.code)), message


def classify(exc: ProviderError) -> ProviderError:
    """Make Meta's throttling codes retryable whatever HTTP status carried them."""
    if exc.code not in RETRYABLE_CODES or exc.retryable:
        return exc
    retry_after = exc.retry_after
    if retry_after is None and exc.code == PAIR_RATE_LIMIT:
        retry_after = PAIR_RATE_DELAY
    return ProviderError(
        str(exc), code=exc.code, retryable=True, retry_after=retry_after, http_status=exc.http_status
    )


class WhatsAppCloudSender:
    """Sends WhatsApp messages through the Cloud API (or the simulator speaking it)."""

    channel = Channel.WHATSAPP
    provider = PROVIDER

    def __init__(self, session: aiohttp.ClientSession, config: WhatsAppConfig) -> None:
        self._session = session
        base = (config.base_url or GRAPH_API_BASE).rstrip("/")
        self._url = f"{base}/{config.api_version}/{config.phone_number_id}/messages"
        self._headers = {
            "Authorization": f"Bearer {config.access_token}",
            "Content-Type": "application/json",
        }

    async def send(self, job: OutboxJob, status_callback_url: str) -> SendResult:
        # Meta reports statuses to the app's one webhook (/webhooks/whatsapp), not to a
        # per-message URL, so ``status_callback_url`` has no place in the request.
        try:
            body = await request_provider(
                self._session,
                "POST",
                self._url,
                data=_encode(render_send(job)),
                headers=self._headers,
                read_error=read_graph_error,
            )
        except ProviderError as exc:
            raise classify(exc) from None
        try:
            sent = _decode_response(body).messages
        except msgspec.DecodeError:
            sent = []
        if not sent:
            # Meta may have taken it: retrying could send it twice, so this is final.
            raise ProviderError("Cloud API answered without a message id", code="invalid_response")
        return SendResult(
            provider=PROVIDER,
            provider_message_id=sent[0].id,
            status=MessageStatus.QUEUED,
            segments=0,
        )
