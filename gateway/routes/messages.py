"""``/v1/messages``: send a message to a customer, look one up."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from conversations.access import Scope
from conversations.codec import encode
from conversations.ids import new_message_id
from conversations.models import Channel, MessageRecord, MessageStatus, OutboundRequest
from conversations.normalize import InvalidIdentifier, phone_identifier
from conversations.sharding import shard_for_identifier
from gateway.errors import ApiError, decode_json_body
from gateway.idempotency import Reservation
from gateway.services import SERVICES, Services

routes = web.RouteTableDef()

MessageType = Literal["transactional", "service", "marketing", "rich_media", "urgent"]


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    """Who to send to, by one of their identifiers."""

    phone: str


class SendMessage(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/messages``."""

    to: Recipient
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=1600)]
    type: MessageType = "service"
    channel: Channel | None = None


class Accepted(msgspec.Struct):
    id: str
    status: MessageStatus
    customer_shard: int


def json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), content_type="application/json")


@routes.post("/v1/messages")
async def send_message(request: web.Request) -> web.Response:
    """Accept a message for a customer: durable on the customer's shard before 202.

    With an ``Idempotency-Key`` header a retry gets the first answer (same message id) back.
    """
    services = request.app[SERVICES]
    grant = services.api_keys.require(request, Scope.SEND)
    body = await request.read()

    async def accept(reservation: Reservation | None) -> web.Response:
        return await _accept_message(services, body, reservation)

    return await services.idempotency.run(request, grant.key_id, body, accept)


async def _accept_message(services: Services, body: bytes, reservation: Reservation | None) -> web.Response:
    command = decode_json_body(body, SendMessage)
    if command.channel not in (None, Channel.SMS):
        raise ApiError(422, "channel_unavailable", f"channel {command.channel} is not enabled", "channel")
    try:
        recipient = phone_identifier(command.to.phone)
    except InvalidIdentifier as exc:
        raise ApiError(422, "invalid_identifier", str(exc), "to.phone") from exc
    message_id = reservation.resource_id("msg_") if reservation else new_message_id()
    entry = OutboundRequest(
        message_id=message_id,
        recipient=recipient,
        body=command.body,
        message_type=command.type,
        requested_at=services.clock(),
        channel=command.channel,
    )
    shard = shard_for_identifier(recipient, services.config.shards)
    # A retry that took over a crashed request finds its write already done (dedupe) and
    # answers exactly as the first would have.
    await services.ingest.submit(shard, encode(entry), reservation.dedupe_key if reservation else None)
    return json_response(Accepted(message_id, MessageStatus.ACCEPTED, shard), status=202)


@routes.get("/v1/messages/{message_id}")
async def get_message(request: web.Request) -> web.Response:
    """One message with its current status and status history."""
    services = request.app[SERVICES]
    services.api_keys.require(request, Scope.READ)
    record: MessageRecord | None = await services.reader.message(request.match_info["message_id"])
    if record is None:
        raise ApiError(404, "message_not_found", "no message with this id")
    return json_response(record)
