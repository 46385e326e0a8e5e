"""``/v1/messages``: send a message to a customer, look one up."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from conversations.codec import encode
from conversations.ids import new_message_id
from conversations.models import (
    Channel,
    MessageRecord,
    MessageStatus,
    OutboundRequest,
    RichCard,
    Suggestion,
    TemplateRef,
)
from conversations.normalize import InvalidIdentifier, phone_identifier
from conversations.sharding import shard_for_identifier
from gateway.errors import ApiError, decode_json_body
from gateway.services import SERVICES

routes = web.RouteTableDef()

MessageType = Literal["transactional", "service", "marketing", "rich_media", "urgent"]


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    """Who to send to, by one of their identifiers."""

    phone: str


HttpUrl = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^https?://")]
ENABLED_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.VOICE})
VOICE_TYPES = frozenset({"urgent", "transactional"})  # a phone call is too intrusive for the rest


class SuggestionIn(msgspec.Struct, forbid_unknown_fields=True):
    """A chip on an RCS card: a reply, or with ``url`` an open-URL action (RBM limits)."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=25)]
    postback_data: Annotated[str, msgspec.Meta(max_length=2048)] = ""
    url: HttpUrl = ""


class RichCardIn(msgspec.Struct, forbid_unknown_fields=True):
    """An RCS standalone card; adapted to SMS (title, description, link) when RCS is not possible."""

    title: Annotated[str, msgspec.Meta(max_length=200)] = ""
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    media_url: HttpUrl = ""
    suggestions: Annotated[list[SuggestionIn], msgspec.Meta(max_length=4)] = msgspec.field(
        default_factory=list
    )

    def to_domain(self) -> RichCard:
        suggestions = tuple(Suggestion(s.text, s.postback_data, s.url) for s in self.suggestions)
        return RichCard(self.title, self.description, self.media_url, suggestions)


class Template(msgspec.Struct, forbid_unknown_fields=True):
    """An approved WhatsApp template to send, with its body variables in order."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    language: Annotated[str, msgspec.Meta(min_length=2, max_length=15)] = "en_US"
    variables: list[Annotated[str, msgspec.Meta(max_length=1024)]] = msgspec.field(default_factory=list)


class SendMessage(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/messages``: a ``body``, or (WhatsApp only) a ``template``, or both."""

    to: Recipient
    body: Annotated[str, msgspec.Meta(max_length=1600)] = ""
    type: MessageType = "service"
    channel: Channel | None = None
    rich_card: RichCardIn | None = None
    template: Template | None = None


def _check_channel(command: SendMessage) -> None:
    """Refuse what the chosen channel cannot carry, naming the field."""
    if command.channel is not None and command.channel not in ENABLED_CHANNELS:
        raise ApiError(422, "channel_unavailable", f"channel {command.channel} is not enabled", "channel")
    if command.rich_card is not None:
        if command.channel is not Channel.RCS:
            raise ApiError(422, "rich_card_unsupported", "rich_card needs channel rcs", "rich_card")
        card = command.rich_card
        if not (card.title or card.description or card.media_url):
            raise ApiError(
                422, "validation_failed", "a rich card needs a title, description or media_url", "rich_card"
            )
    if command.template is not None and command.channel is not Channel.WHATSAPP:
        raise ApiError(422, "validation_failed", "a template needs channel whatsapp", "template")
    if not command.body and command.template is None:
        raise ApiError(422, "validation_failed", "body is required (or a template on WhatsApp)", "body")
    if command.channel is Channel.VOICE and command.type not in VOICE_TYPES:
        raise ApiError(
            422, "channel_unavailable", "voice calls are only for urgent or transactional messages", "type"
        )


class Accepted(msgspec.Struct):
    id: str
    status: MessageStatus
    customer_shard: int


def json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), content_type="application/json")


@routes.post("/v1/messages")
async def send_message(request: web.Request) -> web.Response:
    """Accept a message for a customer: durable on the customer's shard before 202."""
    services = request.app[SERVICES]
    services.api_keys.require(request)
    command = decode_json_body(await request.read(), SendMessage)
    _check_channel(command)
    try:
        recipient = phone_identifier(command.to.phone)
    except InvalidIdentifier as exc:
        raise ApiError(422, "invalid_identifier", str(exc), "to.phone") from exc
    template = None
    if command.template is not None:
        spec = command.template
        template = TemplateRef(spec.name, spec.language, tuple(spec.variables))
    message_id = new_message_id()
    entry = OutboundRequest(
        message_id=message_id,
        recipient=recipient,
        body=command.body or _describe(template),
        message_type=command.type,
        requested_at=services.clock(),
        channel=command.channel,
        rich_card=command.rich_card.to_domain() if command.rich_card else None,
        template=template,
    )
    shard = shard_for_identifier(recipient, services.config.shards)
    await services.ingest.submit(shard, encode(entry))
    return json_response(Accepted(message_id, MessageStatus.ACCEPTED, shard), status=202)


def _describe(template: TemplateRef | None) -> str:
    """What the thread shows for a template sent without a body of our own."""
    if template is None:
        return ""
    variables = f": {', '.join(template.variables)}" if template.variables else ""
    return f"[template {template.name} ({template.language}){variables}]"


@routes.get("/v1/messages/{message_id}")
async def get_message(request: web.Request) -> web.Response:
    """One message with its current status and status history."""
    services = request.app[SERVICES]
    services.api_keys.require(request)
    record: MessageRecord | None = await services.reader.message(request.match_info["message_id"])
    if record is None:
        raise ApiError(404, "message_not_found", "no message with this id")
    return json_response(record)
