"""A local stand-in for Twilio Voice: notification calls out, simulated callers in.

Outbound, it takes ``POST /2010-04-01/Accounts/{sid}/Calls.json`` (basic auth), parses the
``Twiml`` as Twilio would (a malformed document fails the call with error 12100), and posts
signed call status callbacks for the subscribed ``StatusCallbackEvent``s: initiated, ringing,
in-progress, then completed — or busy / no-answer / failed when scripted. Inbound,
``POST /simulator/voice/call`` plays a caller: it posts the signed incoming-call webhook,
follows the TwiML ``<Gather>`` action and posts what the caller says, turn by turn.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin

import aiohttp
import msgspec
from aiohttp import web

from channels.simulator.common import basic_auth_ok, twilio_error, with_client_session
from channels.twilio_signature import compute_signature

if TYPE_CHECKING:
    from channels.simulator.settings import SimulatorSettings

DOCUMENT_PARSE_FAILURE = 12100  # Twilio's error when the TwiML is not well-formed XML
_EVENT_STATUS = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}


class CallFailureScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/voice/fail``: the next ``count`` calls end this way."""

    status: Literal["busy", "no-answer", "failed", "canceled"] = "busy"
    count: int = 1
    to: str | None = None
    http_status: int | None = None  # refuse at the API instead
    error_code: int = 21215


class CallerScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/voice/call``: someone calls the business and says these things."""

    from_: str = msgspec.field(name="from")
    to: str = "+15005550006"
    utterances: list[str] = msgspec.field(default_factory=list)
    digits: str = ""  # pressed instead of speaking, at the first Gather
    confidence: float = 0.9216


class KeypressScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/voice/press``: who answers our next call to ``to`` presses ``digits``
    at its first Gather (say, the opt-out offer after a notification)."""

    to: str
    digits: str


@dataclass
class VoiceState:
    """What the Voice simulator has seen and been told."""

    settings: SimulatorSettings
    calls: list[dict[str, Any]] = field(default_factory=list)
    failures: list[CallFailureScript] = field(default_factory=list)
    keypresses: dict[str, str] = field(default_factory=dict)  # callee number -> digits
    callbacks_posted: int = 0
    session: aiohttp.ClientSession | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)


VOICE_STATE = web.AppKey("voice_simulator_state", VoiceState)


def _take_failure(state: VoiceState, to: str) -> CallFailureScript | None:
    for index, script in enumerate(state.failures):
        if script.to is None or script.to == to:
            if script.count <= 1:
                del state.failures[index]
            else:
                state.failures[index] = msgspec.structs.replace(script, count=script.count - 1)
            return script
    return None


def spoken(twiml: str) -> list[str]:
    """The texts a TwiML document says; raises ET.ParseError when it is not well-formed."""
    root = ET.fromstring(twiml.encode())
    return [element.text or "" for element in root.iter("Say")]


def _rfc2822() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())


async def create_call(request: web.Request) -> web.Response:
    """Twilio's ``Calls.json`` create."""
    state = request.app[VOICE_STATE]
    settings = state.settings
    if request.match_info["account_sid"] != settings.account_sid or not basic_auth_ok(
        request, settings.account_sid, settings.auth_token
    ):
        return twilio_error(401, 20003, "Authenticate")
    form = await request.post()
    to, from_ = str(form.get("To", "")), str(form.get("From", ""))
    twiml = str(form.get("Twiml", ""))
    if not to:
        return twilio_error(400, 21201, "No 'To' number is specified")
    if not from_:
        return twilio_error(400, 21213, "No 'From' number is specified")
    if not twiml and not form.get("Url"):
        return twilio_error(400, 21205, "Either Url or Twiml is required")
    failure = _take_failure(state, to)
    if failure is not None and failure.http_status is not None:
        return twilio_error(failure.http_status, failure.error_code, "simulated provider failure")
    outcome, error_code, said = (failure.status if failure else "completed"), "", []
    try:
        said = spoken(twiml) if twiml else []
    except ET.ParseError:
        outcome, error_code = "failed", str(DOCUMENT_PARSE_FAILURE)
    sid = "CA" + secrets.token_hex(16)
    now = _rfc2822()
    base_uri = f"/2010-04-01/Accounts/{settings.account_sid}/Calls/{sid}"
    record = {
        "account_sid": settings.account_sid,
        "annotation": None,
        "answered_by": None,
        "api_version": "2010-04-01",
        "caller_name": None,
        "date_created": now,
        "date_updated": now,
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": from_,
        "from_formatted": from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": "PN" + "0" * 32,
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {
            "notifications": f"{base_uri}/Notifications.json",
            "recordings": f"{base_uri}/Recordings.json",
        },
        "to": to,
        "to_formatted": to,
        "uri": f"{base_uri}.json",
    }
    callback = str(form.get("StatusCallback", ""))
    events = [str(e) for e in form.getall("StatusCallbackEvent", [])]
    call = {**record, "twiml": twiml, "spoken": said, "status_callback": callback, "events": events}
    state.calls.append(call)
    digits = state.keypresses.pop(to, "")
    if digits and outcome == "completed":
        task = asyncio.create_task(_press(state, call, digits))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    if callback and not settings.sink:
        task = asyncio.create_task(_post_statuses(state, callback, record, events, outcome, error_code))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    return web.json_response(record, status=201)


async def _post_signed(state: VoiceState, url: str, form: dict[str, str]) -> tuple[int, str]:
    signature = compute_signature(state.settings.auth_token, url, form.items())
    assert state.session is not None
    async with state.session.post(url, data=form, headers={"X-Twilio-Signature": signature}) as response:
        return response.status, await response.text()


async def _post_statuses(
    state: VoiceState, url: str, record: dict[str, Any], events: list[str], outcome: str, error_code: str
) -> None:
    """Call progress as Twilio reports it: only subscribed events, the final one always."""
    answered = outcome == "completed"
    steps = [_EVENT_STATUS[e] for e in ("initiated", "ringing") if e in events]
    if answered and "answered" in events:
        steps.append("in-progress")
    steps.append(outcome)
    for sequence, call_status in enumerate(steps):
        await asyncio.sleep(state.settings.callback_delay)
        form = {
            "AccountSid": record["account_sid"],
            "ApiVersion": "2010-04-01",
            "CallSid": record["sid"],
            "CallStatus": call_status,
            "Called": record["to"],
            "Caller": record["from"],
            "CallbackSource": "call-progress-events",
            "Direction": "outbound-api",
            "From": record["from"],
            "SequenceNumber": str(sequence),
            "Timestamp": _rfc2822(),
            "To": record["to"],
        }
        if call_status == "completed":
            form["CallDuration"] = form["Duration"] = "7"
        if call_status == "failed" and error_code:
            form["ErrorCode"] = error_code
        for attempt in range(5):
            try:
                status, _ = await _post_signed(state, url, form)
                if status < 500:
                    state.callbacks_posted += 1
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2 * (attempt + 1))


async def _press(state: VoiceState, call: dict[str, Any], digits: str) -> None:
    """The callee presses ``digits`` at the call's first Gather: Twilio posts them, signed, to
    its action (absolute: an inline Twiml has no URL to resolve against)."""
    gather = _gather_of(call["twiml"])
    action = gather.get("action", "") if gather is not None else ""
    if not action:
        call["keypress"] = {"digits": digits, "error": "the call has no Gather to press keys at"}
        return
    form = {
        "AccountSid": call["account_sid"],
        "ApiVersion": "2010-04-01",
        "CallSid": call["sid"],
        "CallStatus": "in-progress",
        "Called": call["to"],
        "Caller": call["from"],
        "Digits": digits,
        "Direction": "outbound-api",
        "FinishedOnKey": "",
        "From": call["from"],
        "To": call["to"],
    }
    status, twiml = await _post_signed(state, action, form)
    call["keypress"] = {"digits": digits, "action": action, "gateway_status": status, "twiml": twiml}


async def script_keypress(request: web.Request) -> web.Response:
    state = request.app[VOICE_STATE]
    try:
        script = msgspec.json.decode(await request.read() or b"{}", type=KeypressScript)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _bad_script(exc)
    state.keypresses[script.to] = script.digits
    return web.json_response({"scheduled": len(state.keypresses)})


def _bad_script(exc: Exception) -> web.Response:
    return web.json_response({"error": {"code": "validation_failed", "message": str(exc)}}, status=422)


async def script_failure(request: web.Request) -> web.Response:
    state = request.app[VOICE_STATE]
    try:
        script = msgspec.json.decode(await request.read() or b"{}", type=CallFailureScript)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _bad_script(exc)
    state.failures.append(script)
    return web.json_response({"scheduled": len(state.failures)})


def _gather_of(twiml: str) -> ET.Element | None:
    return ET.fromstring(twiml.encode()).find(".//Gather")


async def simulate_caller(request: web.Request) -> web.Response:
    """A caller rings the business, hears the greeting, and speaks at each Gather."""
    state = request.app[VOICE_STATE]
    try:
        script = msgspec.json.decode(await request.read(), type=CallerScript)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _bad_script(exc)
    call_sid = "CA" + secrets.token_hex(16)
    base = {
        "AccountSid": state.settings.account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": script.to,
        "Caller": script.from_,
        "Direction": "inbound",
        "From": script.from_,
        "FromCountry": "US",
        "To": script.to,
        "ToCountry": "US",
    }
    url = state.settings.gateway_url + "/webhooks/twilio/voice"
    status, twiml = await _post_signed(state, url, base)
    result: dict[str, Any] = {"call_sid": call_sid, "gateway_status": status, "answer": twiml, "turns": []}
    inputs: list[dict[str, str]] = [
        {"SpeechResult": u, "Confidence": str(script.confidence)} for u in script.utterances
    ]
    if script.digits:
        inputs.insert(0, {"Digits": script.digits})
    for said in inputs:
        if status != 200:
            break
        try:
            gather = _gather_of(twiml)
        except ET.ParseError as exc:
            result["error"] = f"TwiML is not well-formed: {exc}"
            break
        if gather is None:
            break
        url = urljoin(url, gather.get("action") or url)
        status, twiml = await _post_signed(state, url, {**base, "CallStatus": "in-progress", **said})
        result["turns"].append({"said": said, "action": url, "gateway_status": status, "twiml": twiml})
    return web.json_response(result)


async def list_calls(request: web.Request) -> web.Response:
    state = request.app[VOICE_STATE]
    to = request.query.get("to")
    calls = [c for c in state.calls if to is None or c["to"] == to]
    return web.json_response({"calls": calls, "callbacks_posted": state.callbacks_posted})


def setup(app: web.Application, settings: SimulatorSettings) -> None:
    """Mount the Voice simulator's routes and its resources on the simulator app."""
    app[VOICE_STATE] = VoiceState(settings)
    app.router.add_post("/2010-04-01/Accounts/{account_sid}/Calls.json", create_call)
    app.router.add_post("/simulator/voice/fail", script_failure)
    app.router.add_post("/simulator/voice/call", simulate_caller)
    app.router.add_post("/simulator/voice/press", script_keypress)
    app.router.add_get("/simulator/voice/calls", list_calls)
    with_client_session(app, VOICE_STATE)
