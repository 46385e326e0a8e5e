"""Twilio webhooks: inbound messages and message status callbacks (signed form POSTs)."""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDict

from channels.base import InvalidPayload
from channels.sms_twilio import EMPTY_TWIML, parse_inbound, parse_status
from channels.twilio_signature import algorithm_from_settings, is_valid_signature
from conversations.codec import encode
from conversations.sharding import shard_for_customer, shard_for_identifier
from gateway.errors import ApiError
from gateway.services import SERVICES, Services

routes = web.RouteTableDef()

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def verified_form(request: web.Request, services: Services) -> MultiDict[str]:
    """The request's form parameters, once X-Twilio-Signature proves Twilio sent them."""
    if request.content_type not in FORM_TYPES:
        raise ApiError(415, "unsupported_media_type", "Twilio webhooks are form-encoded")
    posted = await request.post()
    form: MultiDict[str] = MultiDict(
        (name, value) for name, value in posted.items() if isinstance(value, str)
    )
    url = services.config.public_url + request.raw_path
    algorithm = algorithm_from_settings(request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
    signature = request.headers.get("X-Twilio-Signature")
    if not is_valid_signature(services.config.twilio.auth_token, url, form.items(), signature, algorithm):
        code = "signature_missing" if not signature else "signature_invalid"
        raise ApiError(403, code, "X-Twilio-Signature is missing or does not match this request")
    return form


def callback_ids(request: web.Request, services: Services) -> tuple[str, str, int]:
    """Our message id, customer id and the customer's shard, from a status callback URL we set."""
    message_id = request.query.get("mid", "")
    customer_id = request.query.get("cid", "")
    shard = shard_for_customer(customer_id, services.config.shards)
    if not message_id or shard is None:
        raise ApiError(400, "invalid_callback_url", "status callback URL lacks our mid/cid", "cid")
    return message_id, customer_id, shard


def _twiml(body: str = EMPTY_TWIML) -> web.Response:
    return web.Response(text=body, content_type="text/xml")


@routes.post("/webhooks/twilio/sms")
async def twilio_inbound_message(request: web.Request) -> web.Response:
    """An SMS/MMS (or WhatsApp-via-Twilio) message from a customer."""
    services = request.app[SERVICES]
    form = await verified_form(request, services)
    try:
        entry = parse_inbound(form, services.clock())
    except InvalidPayload as exc:
        raise ApiError(400, "invalid_payload", str(exc), exc.field) from exc
    shard = shard_for_identifier(entry.sender, services.config.shards)
    await services.ingest.submit(shard, encode(entry), f"twilio:msg:{entry.provider_message_id}")
    return _twiml()


@routes.post("/webhooks/twilio/sms/status")
async def twilio_message_status(request: web.Request) -> web.Response:
    """A status callback for one of our outbound messages (our ids ride in the query)."""
    services = request.app[SERVICES]
    form = await verified_form(request, services)
    message_id, customer_id, shard = callback_ids(request, services)
    try:
        entry = parse_status(form, message_id, customer_id, services.clock())
    except InvalidPayload as exc:
        raise ApiError(400, "invalid_payload", str(exc), exc.field) from exc
    dedupe = f"twilio:status:{entry.provider_message_id}:{entry.provider_status}"
    await services.ingest.submit(shard, encode(entry), dedupe)
    return _twiml()
