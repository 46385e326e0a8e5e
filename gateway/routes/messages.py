"""``/v1/messages``: send a message to a customer, look one up."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from conversations.codec import encode
from conversations.ids import new_message_id
from conversations.models import Channel, MessageRecord, MessageStatus, OutboundRequest, TemplateRef
from conversations.normalize import InvalidIdentifier, phone_identifier
from conversations.sharding import shard_for_identifier
from gateway.errors import ApiError, decode_json_body
from gateway.services import SERVICES

routes = web.RouteTableDef()

MessageType = Literal["transactional", "service", "marketing", "rich_media", "urgent"]
SENDABLE_CHANNELS = (None, Channel.SMS, Channel.WHATSAPP)


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    """Who to send to, by one of their identifiers."""

    phone: str


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
    template: Template | None = None


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
    if command.channel not in SENDABLE_CHANNELS:
        raise ApiError(422, "channel_unavailable", f"channel {command.channel} is not enabled", "channel")
    if command.template is not None and command.channel is not Channel.WHATSAPP:
        raise ApiError(422, "validation_failed", "a template needs channel whatsapp", "template")
    if not command.body and command.template is None:
        raise ApiError(422, "validation_failed", "body is required (or a template on WhatsApp)", "body")
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
