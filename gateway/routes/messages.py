"""``/v1/messages``: send a message to a customer, look one up."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from conversations.codec import encode
from conversations.config import Config
from conversations.ids import new_message_id
from conversations.models import Channel, Identifier, MessageRecord, MessageStatus, OutboundRequest
from conversations.normalize import InvalidIdentifier, email_identifier, phone_identifier
from conversations.sharding import shard_for_identifier
from gateway.compose import compose
from gateway.errors import ApiError, decode_json_body
from gateway.services import SERVICES

routes = web.RouteTableDef()

MessageType = Literal["transactional", "service", "marketing", "rich_media", "urgent"]


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    """Who to send to, by exactly one of their identifiers."""

    phone: str | None = None
    email: str | None = None


class TemplateRef(msgspec.Struct, forbid_unknown_fields=True):
    """A message kind rendered from ``channels/templates`` with the given variables."""

    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    variables: dict[str, Any] = msgspec.field(default_factory=dict)


class SendMessage(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/messages``: exactly one of ``body`` and ``template``."""

    to: Recipient
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)] | None = None
    template: TemplateRef | None = None
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=998)] | None = None  # email with body
    type: MessageType = "service"
    channel: Channel | None = None
    track: bool | None = None  # None: the config's tracking.channels decide


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
    if (command.body is None) == (command.template is None):
        raise ApiError(422, "validation_failed", "give exactly one of body and template", "body")
    recipient, channel = _recipient_and_channel(command, services.config)
    template = command.template
    content = compose(
        services.templates,
        channel,
        body=command.body,
        subject=command.subject,
        template_kind=template.kind if template else None,
        variables=template.variables if template else {},
    )
    track = command.track if command.track is not None else channel.value in services.config.tracking.channels
    message_id = new_message_id()
    entry = OutboundRequest(
        message_id=message_id,
        recipient=recipient,
        body=content.body,
        message_type=command.type,
        requested_at=services.clock(),
        channel=command.channel,
        subject=content.subject,
        html=content.html,
        template=template.kind if template else "",
        track=track and bool(services.config.tracking.secret),
    )
    shard = shard_for_identifier(recipient, services.config.shards)
    await services.ingest.submit(shard, encode(entry))
    return json_response(Accepted(message_id, MessageStatus.ACCEPTED, shard), status=202)


def _recipient_and_channel(command: SendMessage, config: Config) -> tuple[Identifier, Channel]:
    """The recipient's identifier and the channel to use; 422 naming the field when they don't fit."""
    to = command.to
    if (to.phone is None) == (to.email is None):
        raise ApiError(422, "validation_failed", "give exactly one of to.phone and to.email", "to")
    if to.email is not None:
        if command.channel not in (None, Channel.EMAIL):
            raise ApiError(422, "channel_unavailable", f"channel {command.channel} needs to.phone", "channel")
        if not config.email.smtp_url:
            raise ApiError(422, "channel_unavailable", "email is not configured (email.smtp_url)", "channel")
        try:
            return email_identifier(to.email), Channel.EMAIL
        except InvalidIdentifier as exc:
            raise ApiError(422, "invalid_identifier", str(exc), "to.email") from exc
    assert to.phone is not None
    if command.channel not in (None, Channel.SMS):
        raise ApiError(422, "channel_unavailable", f"channel {command.channel} is not enabled", "channel")
    try:
        return phone_identifier(to.phone), Channel.SMS
    except InvalidIdentifier as exc:
        raise ApiError(422, "invalid_identifier", str(exc), "to.phone") from exc


@routes.get("/v1/messages/{message_id}")
async def get_message(request: web.Request) -> web.Response:
    """One message with its current status and status history."""
    services = request.app[SERVICES]
    services.api_keys.require(request)
    record: MessageRecord | None = await services.reader.message(request.match_info["message_id"])
    if record is None:
        raise ApiError(404, "message_not_found", "no message with this id")
    return json_response(record)
