"""A local stand-in for Twilio's Messages API, with scriptable failures and customer replies.

It speaks Twilio's wire format both ways: it accepts ``POST /2010-04-01/Accounts/{sid}/
Messages.json`` (basic auth) and answers like Twilio; it posts signed status callbacks
(queued → sent → delivered, or failed/undelivered with an ErrorCode) to the StatusCallback
URL it was given; and on request it posts a signed inbound message to the gateway, as a
customer's phone would through Twilio. Google RBM (``rbm.py``) and Twilio Voice
(``voice.py``) are mounted on the same app.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from channels.simulator import rbm, smtp_sink, voice
from channels.simulator.common import basic_auth_ok, twilio_error, with_client_session
from channels.simulator.settings import SimulatorSettings
from channels.simulator.whatsapp import mount_whatsapp
from channels.twilio_signature import compute_signature
from conversations.sms_segments import segment_count


class FailureScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/fail``: make the next ``count`` sends fail."""

    error_code: int = 30003
    count: int = 1
    status: str = "undelivered"  # how the callback reports it: undelivered or failed
    http_status: int | None = None  # refuse at the API with this HTTP status instead
    to: str | None = None  # only sends to this number
    silent: bool = False  # accept the send, then never call back (a provider that goes quiet)


class InboundScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/inbound``: a customer texts the business."""

    from_: str = msgspec.field(name="from")
    body: str = ""
    to: str = "+15005550006"
    media_urls: list[str] = msgspec.field(default_factory=list)


@dataclass
class SimulatorState:
    """What the simulator has seen and what it has been told to do."""

    settings: SimulatorSettings
    sent: list[dict[str, Any]] = field(default_factory=list)
    failures: list[FailureScript] = field(default_factory=list)
    callbacks_posted: int = 0
    session: aiohttp.ClientSession | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)


STATE = web.AppKey("simulator_state", SimulatorState)


def _take_failure(state: SimulatorState, to: str) -> FailureScript | None:
    for script in state.failures:
        if script.to is None or script.to == to:
            if script.count <= 1:
                state.failures.remove(script)
            else:
                state.failures[state.failures.index(script)] = msgspec.structs.replace(
                    script, count=script.count - 1
                )
            return script
    return None


async def create_message(request: web.Request) -> web.Response:
    """Twilio's ``Messages.json`` create."""
    state = request.app[STATE]
    settings = state.settings
    if request.match_info["account_sid"] != settings.account_sid or not basic_auth_ok(
        request, settings.account_sid, settings.auth_token
    ):
        return twilio_error(401, 20003, "Authenticate")
    form = await request.post()
    to = str(form.get("To", ""))
    body = str(form.get("Body", ""))
    if not to:
        return twilio_error(400, 21604, "A 'To' phone number is required.")
    if not body and not form.get("MediaUrl"):
        return twilio_error(400, 21602, "Message body is required.")
    failure = _take_failure(state, to)
    if failure is not None and failure.http_status is not None:
        return twilio_error(failure.http_status, failure.error_code, "simulated provider failure")
    sid = "SM" + secrets.token_hex(16)
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    record = {
        "sid": sid,
        "account_sid": settings.account_sid,
        "to": to,
        "from": str(form.get("From", "")),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "body": body,
        "status": "queued",
        "num_segments": str(segment_count(body) or 1),
        "num_media": "0",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "price": None,
        "price_unit": "USD",
        "error_code": None,
        "error_message": None,
        "date_created": now,
        "date_updated": now,
        "date_sent": None,
        "uri": f"/2010-04-01/Accounts/{settings.account_sid}/Messages/{sid}.json",
    }
    # received_at: when the provider call arrived, for the outbound benchmark's latency
    state.sent.append({**record, "status_callback": form.get("StatusCallback"), "received_at": time.time()})
    callback = form.get("StatusCallback")
    if callback and not settings.sink and not (failure is not None and failure.silent):
        task = asyncio.create_task(_post_statuses(state, str(callback), record, failure))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    return web.json_response(record, status=201)


async def _post_signed(state: SimulatorState, url: str, form: dict[str, str]) -> int:
    signature = compute_signature(state.settings.auth_token, url, form.items())
    assert state.session is not None
    async with state.session.post(url, data=form, headers={"X-Twilio-Signature": signature}) as response:
        await response.read()
        return response.status


async def _post_statuses(
    state: SimulatorState, url: str, record: dict[str, Any], failure: FailureScript | None
) -> None:
    steps = ["sent", failure.status] if failure else ["sent", "delivered"]
    for status in steps:
        await asyncio.sleep(state.settings.callback_delay)
        form = {
            "AccountSid": record["account_sid"],
            "ApiVersion": "2010-04-01",
            "From": record["from"],
            "MessageSid": record["sid"],
            "SmsSid": record["sid"],
            "MessageStatus": status,
            "SmsStatus": status,
            "To": record["to"],
        }
        if failure is not None and status == failure.status:
            form["ErrorCode"] = str(failure.error_code)
        for attempt in range(5):  # Twilio retries callbacks that fail
            try:
                if await _post_signed(state, url, form) < 500:
                    state.callbacks_posted += 1
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2 * (attempt + 1))


async def script_failure(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        script = msgspec.json.decode(await request.read() or b"{}", type=FailureScript)
    except msgspec.ValidationError as exc:
        return web.json_response({"error": {"code": "validation_failed", "message": str(exc)}}, status=422)
    state.failures.append(script)
    return web.json_response({"scheduled": len(state.failures)})


async def customer_inbound(request: web.Request) -> web.Response:
    """Make a simulated customer send a message; answers with what the gateway said."""
    state = request.app[STATE]
    try:
        script = msgspec.json.decode(await request.read(), type=InboundScript)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return web.json_response({"error": {"code": "validation_failed", "message": str(exc)}}, status=422)
    sid = "SM" + secrets.token_hex(16)
    form = {
        "ToCountry": "US",
        "ToState": "",
        "SmsMessageSid": sid,
        "NumMedia": str(len(script.media_urls)),
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": script.body,
        "FromCountry": "US",
        "To": script.to,
        "MessagingServiceSid": "",
        "ToZip": "",
        "NumSegments": str(segment_count(script.body) or 1),
        "MessageSid": sid,
        "AccountSid": state.settings.account_sid,
        "From": script.from_,
        "ApiVersion": "2010-04-01",
    }
    for index, url in enumerate(script.media_urls):
        form[f"MediaUrl{index}"] = url
        form[f"MediaContentType{index}"] = "image/jpeg"
    status = await _post_signed(state, state.settings.gateway_url + "/webhooks/twilio/sms", form)
    return web.json_response({"message_sid": sid, "gateway_status": status})


async def list_sent(request: web.Request) -> web.Response:
    state = request.app[STATE]
    to = request.query.get("to")
    sent = [m for m in state.sent if to is None or m["to"] == to]
    return web.json_response({"messages": sent, "callbacks_posted": state.callbacks_posted})


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.sent.clear()
    state.failures.clear()
    return web.json_response({"reset": True})


def create_simulator_app(settings: SimulatorSettings) -> web.Application:
    """The simulator as an aiohttp app (mount it on its own port)."""
    app = web.Application()
    app[STATE] = SimulatorState(settings)
    app.router.add_post("/2010-04-01/Accounts/{account_sid}/Messages.json", create_message)
    app.router.add_post("/simulator/fail", script_failure)
    app.router.add_post("/simulator/inbound", customer_inbound)
    app.router.add_get("/simulator/messages", list_sent)
    app.router.add_post("/simulator/reset", reset)
    rbm.setup(app, settings)
    voice.setup(app, settings)
    mount_whatsapp(app, settings.whatsapp, settings.gateway_url, settings.callback_delay, settings.sink)
    with_client_session(app, STATE)
    if settings.smtp_port:
        smtp_sink.install(
            app,
            smtp_sink.EmailSettings(settings.smtp_port, settings.gateway_url, settings.email_inbound_secret),
        )
    return app
