"""``/v1/messages``: send a message to a customer, look one up."""

from __future__ import annotations

import msgspec
from aiohttp import web

from conversations.access import Scope
from conversations.codec import encode
from conversations.ids import new_message_id
from conversations.models import Channel, MessageRecord, MessageStatus, OutboundRequest
from conversations.sharding import shard_for_identifier
from gateway.endpoints import GRANT, Endpoints, Param
from gateway.errors import ApiError, decode_json_body
from gateway.idempotency import Reservation
from gateway.message_content import ROUTABLE_PHONE_CHANNELS, check_variants, compose
from gateway.message_requests import (
    SendMessage,
    check_channel_content,
    describe_template,
    recipient_and_channel,
)
from gateway.services import SERVICES, Services

routes = Endpoints()


class Accepted(msgspec.Struct):
    id: str
    status: MessageStatus
    customer_shard: int


def json_response(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), content_type="application/json")


@routes.api(
    "POST",
    "/v1/messages",
    "sendMessage",
    "Send a message to a customer (durable before 202)",
    "messages",
    Scope.SEND,
    (202, "Accepted; the message is stored on the customer's shard", Accepted),
    (409, 422),
    body=SendMessage,
    params=(
        Param(
            "Idempotency-Key",
            "header",
            {"type": "string", "minLength": 1, "maxLength": 255},
            "Retries with the same key and body get the first response again",
        ),
    ),
)
async def send_message(request: web.Request) -> web.Response:
    """Accept a message for a customer: rendered for its channel, durable on the customer's shard
    before 202. With an ``Idempotency-Key`` header a retry gets the first answer (same id) back."""
    services = request.app[SERVICES]
    grant = request[GRANT]
    raw = await request.read()

    async def accept(reservation: Reservation | None) -> web.Response:
        return await _accept_message(services, raw, reservation)

    return await services.idempotency.run(request, grant.key_id, raw, accept)


async def _accept_message(services: Services, raw: bytes, reservation: Reservation | None) -> web.Response:
    command = decode_json_body(raw, SendMessage)
    recipient, channel = recipient_and_channel(command, services.config)
    check_channel_content(command, channel)
    whatsapp_template = command.whatsapp_template.to_domain() if command.whatsapp_template else None
    template = command.template
    if command.body is None and template is None and whatsapp_template is not None:
        body, subject, html = describe_template(whatsapp_template), "", ""
    else:
        content = compose(
            services.templates,
            channel,
            body=command.body,
            subject=command.subject,
            template_kind=template.kind if template else None,
            variables=template.variables if template else {},
        )
        body, subject, html = content.body, content.subject, content.html
        if template is not None and command.channel is None and channel is not Channel.EMAIL:
            # Routing picks the channel later and each attempt renders its own variant: every
            # variant it could pick must render now, so a missing variable is still this 422.
            check_variants(services.templates, template.kind, template.variables, ROUTABLE_PHONE_CHANNELS)
    track = command.track if command.track is not None else channel.value in services.config.tracking.channels
    message_id = reservation.resource_id("msg_") if reservation else new_message_id()
    entry = OutboundRequest(
        message_id=message_id,
        recipient=recipient,
        body=body,
        message_type=command.type,
        requested_at=services.clock(),
        # A phone number leaves the channel to routing unless pinned; an email address is email.
        channel=command.channel or (channel if channel is Channel.EMAIL else None),
        rich_card=command.rich_card.to_domain() if command.rich_card else None,
        template=whatsapp_template,
        subject=subject,
        html=html,
        template_kind=template.kind if template else "",
        variables=dict(template.variables) if template else {},
        track=track and bool(services.config.tracking_key),
        campaign_id=command.campaign.id if command.campaign else "",
        budget=command.campaign.budget if command.campaign else None,
    )
    shard = shard_for_identifier(recipient, services.slot_map)
    # A retry that took over a crashed request finds its write already done (dedupe) and
    # answers exactly as the first would have.
    await services.ingest.submit(shard, encode(entry), reservation.dedupe_key if reservation else None)
    return json_response(Accepted(message_id, MessageStatus.ACCEPTED, shard), status=202)


@routes.api(
    "GET",
    "/v1/messages/{message_id}",
    "getMessage",
    "One message with its status history",
    "messages",
    Scope.READ,
    (200, "The message", MessageRecord),
    (404,),
    params=(Param("message_id", "path", {"type": "string"}, "A message id (msg_…)", True),),
)
async def get_message(request: web.Request) -> web.Response:
    """One message with its status history and, for outbound ones, the routing decision and attempts."""
    services = request.app[SERVICES]
    record: MessageRecord | None = await services.reader.message(request.match_info["message_id"])
    if record is None:
        raise ApiError(404, "message_not_found", "no message with this id")
    return json_response(record)
