"""Google RBM webhook: the clientToken/secret verification echo, then signed user messages and events."""

from __future__ import annotations

from aiohttp import web

from channels.base import InvalidPayload
from channels.rcs_rbm import (
    decode_webhook,
    event_data,
    is_valid_client_token,
    is_valid_signature,
    parse_event,
)
from conversations.codec import encode
from conversations.models import InboundMessage
from conversations.sharding import shard_for_identifier
from gateway.errors import ApiError
from gateway.services import SERVICES

routes = web.RouteTableDef()


def _invalid(exc: InvalidPayload) -> ApiError:
    return ApiError(400, "invalid_payload", str(exc), exc.field)


@routes.post("/webhooks/rcs")
async def rbm_webhook(request: web.Request) -> web.Response:
    """RBM posts here: once to verify the URL, then every UserMessage and UserEvent."""
    services = request.app[SERVICES]
    client_token = services.config.rbm.client_token
    try:
        body = decode_webhook(await request.read())
    except InvalidPayload as exc:
        raise _invalid(exc) from exc
    if body.is_verification:
        if not is_valid_client_token(client_token, body.client_token or ""):
            raise ApiError(403, "client_token_invalid", "clientToken does not match this agent's webhook")
        return web.Response(text=body.secret or "", content_type="text/plain")
    try:
        data = event_data(body)
    except InvalidPayload as exc:
        raise _invalid(exc) from exc
    signature = request.headers.get("X-Goog-Signature")
    if not is_valid_signature(client_token, data, signature):
        code = "signature_missing" if not signature else "signature_invalid"
        raise ApiError(403, code, "X-Goog-Signature is missing or does not match message.data")
    try:
        entry = parse_event(data, services.clock())
    except InvalidPayload as exc:
        raise _invalid(exc) from exc
    if entry is None:  # IS_TYPING and the like: acknowledged, nothing to keep
        return web.Response(status=200)
    if isinstance(entry, InboundMessage):
        shard = shard_for_identifier(entry.sender, services.config.shards)
        dedupe = f"rbm:msg:{entry.provider_message_id}"
    else:
        # Statuses name RBM's message id and the phone; the phone's shard finds our message.
        assert entry.recipient is not None
        shard = shard_for_identifier(entry.recipient, services.config.shards)
        dedupe = f"rbm:status:{entry.provider_message_id}:{entry.provider_status}"
    await services.ingest.submit(shard, encode(entry), dedupe)
    return web.Response(status=200)
