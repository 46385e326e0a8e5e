"""Twilio Voice webhooks: incoming calls, Gather results, and call status callbacks (signed form POSTs)."""

from __future__ import annotations

from aiohttp import web

from channels.base import InvalidPayload
from channels.sms_twilio import EMPTY_TWIML
from channels.voice_twilio import answer_twiml, parse_call, parse_call_status, parse_gather, reply_twiml
from conversations.codec import encode
from conversations.sharding import shard_for_identifier
from gateway.errors import ApiError
from gateway.routes.twilio_webhooks import callback_ids, verified_form
from gateway.services import SERVICES

routes = web.RouteTableDef()


def _twiml(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml")


def _invalid(exc: InvalidPayload) -> ApiError:
    return ApiError(400, "invalid_payload", str(exc), exc.field)


@routes.post("/webhooks/twilio/voice")
async def incoming_call(request: web.Request) -> web.Response:
    """Someone calls our number: greet them and listen."""
    services = request.app[SERVICES]
    form = await verified_form(request, services)
    try:
        parse_call(form)
    except InvalidPayload as exc:
        raise _invalid(exc) from exc
    return _twiml(answer_twiml(services.config.voice))


@routes.post("/webhooks/twilio/voice/gather")
async def gather_result(request: web.Request) -> web.Response:
    """What the caller said (or pressed) becomes a voice entry in their thread; then we answer."""
    services = request.app[SERVICES]
    form = await verified_form(request, services)
    raw_seq = request.query.get("seq", "")
    if not raw_seq.isdigit() or int(raw_seq) < 1:
        raise ApiError(400, "invalid_callback_url", "Gather action URL lacks its sequence number", "seq")
    seq = int(raw_seq)
    try:
        entry = parse_gather(form, seq, services.clock())
    except InvalidPayload as exc:
        raise _invalid(exc) from exc
    if entry is not None:
        shard = shard_for_identifier(entry.sender, services.config.shards)
        await services.ingest.submit(shard, encode(entry), f"twilio:voice:{entry.provider_message_id}")
    return _twiml(reply_twiml(services.config.voice, seq, entry.body if entry else ""))


@routes.post("/webhooks/twilio/voice/status")
async def call_status(request: web.Request) -> web.Response:
    """A status callback for one of our notification calls (our ids ride in the query)."""
    services = request.app[SERVICES]
    form = await verified_form(request, services)
    message_id, customer_id, shard = callback_ids(request, services)
    try:
        entry = parse_call_status(form, message_id, customer_id, services.clock())
    except InvalidPayload as exc:
        raise _invalid(exc) from exc
    dedupe = f"twilio:callstatus:{entry.provider_message_id}:{entry.provider_status}"
    await services.ingest.submit(shard, encode(entry), dedupe)
    return _twiml(EMPTY_TWIML)
