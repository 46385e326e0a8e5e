"""``/v1/messages``: send a message to a customer, look one up."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from conversations.codec import encode
from conversations.ids import new_message_id
from conversations.models import Channel, MessageRecord, MessageStatus, OutboundRequest
from conversations.normalize import InvalidIdentifier, phone_identifier
from conversations.sharding import shard_for_identifier
from gateway.errors import ApiError, decode_json_body
from gateway.services import SERVICES

routes = web.RouteTableDef()

MessageType = Literal["transactional", "service", "marketing", "rich_media", "urgent"]


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    """Who to send to, by one of their identifiers."""

    phone: str


class Campaign(msgspec.Struct, forbid_unknown_fields=True):
    """The campaign a message belongs to; ``budget`` caps its total spend (price-table currency)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    budget: Annotated[float, msgspec.Meta(ge=0)] | None = None


class SendMessage(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/messages``."""

    to: Recipient
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=1600)]
    type: MessageType = "service"
    channel: Channel | None = None
    campaign: Campaign | None = None


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
    if command.channel not in (None, Channel.SMS):
        raise ApiError(422, "channel_unavailable", f"channel {command.channel} is not enabled", "channel")
    try:
        recipient = phone_identifier(command.to.phone)
    except InvalidIdentifier as exc:
        raise ApiError(422, "invalid_identifier", str(exc), "to.phone") from exc
    message_id = new_message_id()
    entry = OutboundRequest(
        message_id=message_id,
        recipient=recipient,
        body=command.body,
        message_type=command.type,
        requested_at=services.clock(),
        channel=command.channel,
        campaign_id=command.campaign.id if command.campaign else "",
        budget=command.campaign.budget if command.campaign else None,
    )
    shard = shard_for_identifier(recipient, services.config.shards)
    await services.ingest.submit(shard, encode(entry))
    return json_response(Accepted(message_id, MessageStatus.ACCEPTED, shard), status=202)


@routes.get("/v1/messages/{message_id}")
async def get_message(request: web.Request) -> web.Response:
    """One message with its status history and, for outbound ones, the routing decision and attempts."""
    services = request.app[SERVICES]
    services.api_keys.require(request)
    record: MessageRecord | None = await services.reader.message(request.match_info["message_id"])
    if record is None:
        raise ApiError(404, "message_not_found", "no message with this id")
    return json_response(record)
