"""Meta WhatsApp Cloud API webhooks: the subscription check and signed message/status POSTs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging

import msgspec
from aiohttp import web

from channels.base import InvalidPayload
from channels.whatsapp_cloud import (
    SIGNATURE_HEADER,
    ParsedWebhook,
    decode_webhook,
    is_valid_signature,
    parse_webhook,
)
from conversations.codec import encode
from conversations.models import InboundMessage, StatusUpdate
from conversations.sharding import shard_for_identifier
from gateway.errors import ApiError, validation_error
from gateway.services import SERVICES, Services

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

WEBHOOK_PATH = "/webhooks/whatsapp"


class Received(msgspec.Struct):
    """What one webhook POST did (Meta ignores the body; it helps people and tests)."""

    messages: int
    statuses: int
    duplicates: int
    skipped: list[str]


@routes.get(WEBHOOK_PATH)
async def verify_subscription(request: web.Request) -> web.Response:
    """Meta's subscription check: echo ``hub.challenge`` when ``hub.verify_token`` is ours."""
    services = request.app[SERVICES]
    expected = services.config.whatsapp.verify_token
    token = request.query.get("hub.verify_token", "")
    if (
        request.query.get("hub.mode") != "subscribe"
        or not expected
        or not hmac.compare_digest(token.encode(), expected.encode())
    ):
        raise ApiError(403, "verification_failed", "hub.mode must be subscribe with our hub.verify_token")
    challenge = request.query.get("hub.challenge", "")
    if not challenge:
        raise ApiError(400, "missing_challenge", "hub.challenge is required", "hub.challenge")
    return web.Response(text=challenge, content_type="text/plain")


@routes.post(WEBHOOK_PATH)
async def receive_webhook(request: web.Request) -> web.Response:
    """Messages and statuses, possibly batched: every one durable (or a known duplicate) before 200."""
    services = request.app[SERVICES]
    raw = await request.read()
    signature = request.headers.get(SIGNATURE_HEADER)
    if not is_valid_signature(services.config.whatsapp.app_secret, raw, signature):
        code = "signature_missing" if not signature else "signature_invalid"
        raise ApiError(403, code, f"{SIGNATURE_HEADER} is missing or does not match this body")
    try:
        body = decode_webhook(raw)
    except msgspec.ValidationError as exc:
        error = validation_error(exc)
        raise ApiError(400, "invalid_payload", error.message, error.field) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    try:
        parsed = parse_webhook(body, services.clock())
    except InvalidPayload as exc:
        raise ApiError(400, "invalid_payload", str(exc), exc.field) from exc
    for reason in parsed.skipped:
        log.warning("whatsapp webhook: skipped %s", reason)
    fresh = await _submit_all(services, parsed)
    received = Received(
        messages=len(parsed.messages),
        statuses=len(parsed.statuses),
        duplicates=fresh.count(False),
        skipped=parsed.skipped,
    )
    return web.Response(body=msgspec.json.encode(received), content_type="application/json")


async def _submit_all(services: Services, parsed: ParsedWebhook) -> list[bool]:
    """Submit every entry at once (the writer batches them per shard); raise if any write failed.

    A partly written POST is answered with an error, Meta retries it whole, and the dedupe
    keys turn the parts already stored into no-ops.
    """
    entries: list[InboundMessage | StatusUpdate] = [*parsed.messages, *parsed.statuses]
    results = await asyncio.gather(
        *(
            services.ingest.submit(_shard(entry, services.config.shards), encode(entry), _dedupe_key(entry))
            for entry in entries
        ),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [bool(result) for result in results]


def _dedupe_key(entry: InboundMessage | StatusUpdate) -> str:
    """A message once per wamid; a status once per wamid and status (Meta retries for 7 days)."""
    if isinstance(entry, InboundMessage):
        return f"whatsapp:msg:{entry.provider_message_id}"
    return f"whatsapp:status:{entry.provider_message_id}:{entry.provider_status}"


def _shard(entry: InboundMessage | StatusUpdate, shards: int) -> int:
    """The sender's shard; a status goes to its recipient's (the shard resolves it by wamid)."""
    if isinstance(entry, InboundMessage):
        return shard_for_identifier(entry.sender, shards)
    if entry.recipient is not None:
        return shard_for_identifier(entry.recipient, shards)
    # No recipient: any shard can match the wamid to our message, so pick one stably.
    digest = hashlib.blake2b(entry.provider_message_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards
