"""Inbound email: ``POST /webhooks/email/inbound`` in SendGrid Inbound Parse's multipart format.

The shared secret (``email.inbound_secret``) comes either as ``?secret=…`` in the URL
configured at SendGrid, or as the password of HTTP basic auth
(``https://parse:SECRET@host/webhooks/email/inbound``); compared in constant time. Without
it the answer is 403 and nothing is read or stored.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import BodyPartReader, web

from channels.base import InvalidPayload
from channels.email_inbound import TEXT_FIELDS, decode_fields, parse_inbound_email
from conversations.codec import encode
from conversations.sharding import shard_for_identifier
from gateway.errors import ApiError
from gateway.routes.messages import json_response
from gateway.services import SERVICES

routes = web.RouteTableDef()

MAX_FIELD_BYTES = 2 * 1024 * 1024  # one text/html part; SendGrid caps a whole email at 30 MB
MAX_PARTS = 200


def _presented_secret(request: web.Request) -> str:
    if "secret" in request.query:
        return request.query["secret"]
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        _, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return password


def require_secret(request: web.Request, secret: str) -> None:
    """403 unless the request carries the configured inbound secret."""
    if not secret:
        raise ApiError(403, "inbound_email_disabled", "no inbound email secret is configured")
    presented = _presented_secret(request)
    if not presented or not hmac.compare_digest(presented.encode(), secret.encode()):
        code = "secret_missing" if not presented else "secret_invalid"
        raise ApiError(403, code, "the inbound email secret is missing or wrong")


async def read_parse_form(request: web.Request) -> dict[str, bytes]:
    """The text fields of the multipart body; attachment files are drained, not kept."""
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "SendGrid Inbound Parse posts multipart/form-data")
    reader = await request.multipart()
    fields: dict[str, bytes] = {}
    for _ in range(MAX_PARTS):
        part = await reader.next()
        if part is None:
            return fields
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "invalid_payload", "nested multipart is not expected")
        keep = part.filename is None and part.name in TEXT_FIELDS
        size = 0
        chunks = []
        while chunk := await part.read_chunk():
            size += len(chunk)
            if keep:
                if size > MAX_FIELD_BYTES:
                    raise ApiError(413, "payload_too_large", f"field {part.name} is too large", part.name)
                chunks.append(chunk)
        if keep and part.name:
            fields[part.name] = b"".join(chunks)
    raise ApiError(400, "invalid_payload", f"more than {MAX_PARTS} form parts")


@routes.post("/webhooks/email/inbound")
async def email_inbound(request: web.Request) -> web.Response:
    """An email a customer sent us, as SendGrid Inbound Parse delivers it."""
    services = request.app[SERVICES]
    require_secret(request, services.config.email.inbound_secret)
    form = decode_fields(await read_parse_form(request))
    try:
        entry = parse_inbound_email(form, services.clock())
    except InvalidPayload as exc:
        raise ApiError(400, "invalid_payload", str(exc), exc.field) from exc
    shard = shard_for_identifier(entry.sender, services.config.shards)
    fresh = await services.ingest.submit(shard, encode(entry), f"email:msg:{entry.provider_message_id}")
    return json_response({"status": "received" if fresh else "duplicate"})
