"""A local stand-in for Meta's WhatsApp Cloud API (Graph), with scriptable failures and customers.

It speaks the Cloud API's wire format both ways: it accepts ``POST /{version}/{phone_number_id}/
messages`` with a bearer token and answers with a wamid; it posts signed status webhooks
(sent → delivered → read, or failed with a scripted error code such as 131026 or 131047) to
the gateway's ``/webhooks/whatsapp``; and on request a simulated customer writes to the
business, as their WhatsApp app would through Meta.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from channels.simulator.common import with_client_session
from channels.simulator.fixed_credentials import (
    SIMULATOR_WHATSAPP_ACCESS_TOKEN,
    SIMULATOR_WHATSAPP_APP_SECRET,
    SIMULATOR_WHATSAPP_PHONE_NUMBER_ID,
)
from channels.whatsapp_cloud import SIGNATURE_HEADER, compute_signature

WEBHOOK_PATH = "/webhooks/whatsapp"

# Titles Meta gives these codes (its error-code reference); others get a generic one.
ERROR_TITLES = {
    130429: "Rate limit hit",
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "User has stopped marketing messages",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
}


class WhatsAppSimulatorSettings(msgspec.Struct, frozen=True):
    """The business the fake Graph API serves and the secrets it checks and signs with."""

    access_token: str = SIMULATOR_WHATSAPP_ACCESS_TOKEN
    app_secret: str = SIMULATOR_WHATSAPP_APP_SECRET
    phone_number_id: str = SIMULATOR_WHATSAPP_PHONE_NUMBER_ID
    display_phone_number: str = "15550783881"
    business_account_id: str = "102290129340398"


class WhatsAppFailureScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/whatsapp/fail``: make the next ``count`` sends fail with ``error_code``."""

    error_code: int = 131026
    count: int = 1
    http_status: int | None = None  # refuse at the API with this HTTP status instead of a webhook
    to: str | None = None  # only sends to this number (E.164, with or without "+")
    details: str = ""


class WhatsAppInboundScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/whatsapp/inbound``: a customer writes to the business on WhatsApp."""

    from_: str = msgspec.field(name="from")
    body: str = ""
    name: str = "Simulated Customer"
    reply_id: str = ""  # set: the customer tapped a reply button with this id (``body`` is its title)
    timestamp: int | None = None  # when they wrote (epoch seconds); default now


@dataclass
class WhatsAppSimulatorState:
    """What the fake Graph API has seen and what it has been told to do."""

    settings: WhatsAppSimulatorSettings
    gateway_url: str
    callback_delay: float
    sink: bool
    sent: list[dict[str, Any]] = field(default_factory=list)
    failures: list[WhatsAppFailureScript] = field(default_factory=list)
    webhooks_posted: int = 0
    session: aiohttp.ClientSession | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)


WHATSAPP_STATE = web.AppKey("whatsapp_simulator_state", WhatsAppSimulatorState)


def _digits(number: str) -> str:
    return number.strip().removeprefix("whatsapp:").lstrip("+")


def _graph_error(status: int, code: int, message: str, details: str = "") -> web.Response:
    error: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": base64.b64encode(secrets.token_bytes(12)).decode(),
    }
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return web.json_response({"error": error}, status=status)


def _take_failure(state: WhatsAppSimulatorState, to: str) -> WhatsAppFailureScript | None:
    for index, script in enumerate(state.failures):
        if script.to is None or _digits(script.to) == to:
            if script.count <= 1:
                del state.failures[index]
            else:
                state.failures[index] = msgspec.structs.replace(script, count=script.count - 1)
            return script
    return None


def _invalid_message(message: dict[str, Any]) -> str | None:
    """What is wrong with a send request, in Graph's words, or None when it is well formed."""
    if message.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required."
    if not message.get("to"):
        return "The parameter to is required."
    kind = message.get("type", "text")
    if kind == "text":
        text = message.get("text")
        if not isinstance(text, dict) or not text.get("body"):
            return "The parameter text['body'] is required."
    elif kind == "template":
        template = message.get("template")
        language = template.get("language") if isinstance(template, dict) else None
        if not isinstance(template, dict) or not template.get("name"):
            return "The parameter template['name'] is required."
        if not isinstance(language, dict) or not language.get("code"):
            return "The parameter template['language']['code'] is required."
    elif not isinstance(message.get(kind), dict):
        return f"The parameter {kind} is required."
    return None


async def send_message(request: web.Request) -> web.Response:
    """The Cloud API's ``POST /{version}/{phone_number_id}/messages``."""
    state = request.app[WHATSAPP_STATE]
    settings = state.settings
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        token.encode(), settings.access_token.encode()
    ):
        return _graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
    if request.match_info["phone_number_id"] != settings.phone_number_id:
        return _graph_error(400, 100, "Unsupported post request. Object does not exist")
    try:
        message = msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        return _graph_error(400, 100, "Invalid parameter")
    if not isinstance(message, dict):
        return _graph_error(400, 100, "Invalid parameter")
    problem = _invalid_message(message)
    if problem is not None:
        return _graph_error(400, 100, problem)
    to = _digits(str(message["to"]))
    failure = _take_failure(state, to)
    if failure is not None and failure.http_status is not None:
        title = ERROR_TITLES.get(failure.error_code, "Simulated failure")
        return _graph_error(failure.http_status, failure.error_code, title, failure.details)
    wamid = "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(18)).decode()
    state.sent.append({**message, "id": wamid, "to": to})
    if not state.sink:
        task = asyncio.create_task(_post_statuses(state, wamid, to, failure))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    answer: dict[str, Any] = {"id": wamid}
    if message.get("type") == "template":
        answer["message_status"] = "accepted"
    return web.json_response(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": message["to"], "wa_id": to}],
            "messages": [answer],
        }
    )


def _envelope(settings: WhatsAppSimulatorSettings, value: dict[str, Any]) -> dict[str, Any]:
    metadata = {
        "display_phone_number": settings.display_phone_number,
        "phone_number_id": settings.phone_number_id,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": settings.business_account_id,
                "changes": [
                    {
                        "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
                        "field": "messages",
                    }
                ],
            }
        ],
    }


async def _post_signed(state: WhatsAppSimulatorState, payload: dict[str, Any]) -> int:
    raw = msgspec.json.encode(payload)
    headers = {
        SIGNATURE_HEADER: compute_signature(state.settings.app_secret, raw),
        "Content-Type": "application/json",
    }
    assert state.session is not None
    async with state.session.post(state.gateway_url + WEBHOOK_PATH, data=raw, headers=headers) as response:
        await response.read()
        return response.status


async def _deliver(state: WhatsAppSimulatorState, payload: dict[str, Any]) -> int:
    """Post a webhook, retrying failures as Meta does (here a few times, quickly)."""
    status = 0
    for attempt in range(5):
        try:
            status = await _post_signed(state, payload)
            if status < 500:
                state.webhooks_posted += 1
                return status
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2 * (attempt + 1))
    return status


async def _post_statuses(
    state: WhatsAppSimulatorState, wamid: str, to: str, failure: WhatsAppFailureScript | None
) -> None:
    steps = ["failed"] if failure else ["sent", "delivered", "read"]
    for step in steps:
        await asyncio.sleep(state.callback_delay)
        status: dict[str, Any] = {
            "id": wamid,
            "status": step,
            "timestamp": str(int(time.time())),
            "recipient_id": to,
        }
        if failure is not None:
            title = ERROR_TITLES.get(failure.error_code, "Simulated failure")
            status["errors"] = [
                {
                    "code": failure.error_code,
                    "title": title,
                    "message": title,
                    "error_data": {"details": failure.details or title},
                    "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                }
            ]
        await _deliver(state, _envelope(state.settings, {"statuses": [status]}))


async def script_failure(request: web.Request) -> web.Response:
    state = request.app[WHATSAPP_STATE]
    try:
        script = msgspec.json.decode(await request.read() or b"{}", type=WhatsAppFailureScript)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return web.json_response({"error": {"code": "validation_failed", "message": str(exc)}}, status=422)
    state.failures.append(script)
    return web.json_response({"scheduled": len(state.failures)})


async def customer_inbound(request: web.Request) -> web.Response:
    """Make a simulated customer write on WhatsApp; answers with the wamid and the gateway's status."""
    state = request.app[WHATSAPP_STATE]
    try:
        script = msgspec.json.decode(await request.read(), type=WhatsAppInboundScript)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return web.json_response({"error": {"code": "validation_failed", "message": str(exc)}}, status=422)
    wa_id = _digits(script.from_)
    wamid = "wamid." + base64.b64encode(b"\x15\x02\x00\x12\x18\x14" + secrets.token_bytes(20)).decode()
    message: dict[str, Any] = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(script.timestamp if script.timestamp is not None else int(time.time())),
    }
    if script.reply_id:
        reply = {"id": script.reply_id, "title": script.body}
        message.update(type="interactive", interactive={"type": "button_reply", "button_reply": reply})
    else:
        message.update(type="text", text={"body": script.body})
    value = {"contacts": [{"profile": {"name": script.name}, "wa_id": wa_id}], "messages": [message]}
    status = await _deliver(state, _envelope(state.settings, value))
    return web.json_response({"wamid": wamid, "gateway_status": status})


async def list_sent(request: web.Request) -> web.Response:
    state = request.app[WHATSAPP_STATE]
    to = request.query.get("to")
    sent = [m for m in state.sent if to is None or m["to"] == _digits(to)]
    failures = [
        msgspec.to_builtins(f)
        for f in state.failures
        if to is None or f.to is None or _digits(f.to) == _digits(to)
    ]
    return web.json_response(
        {"messages": sent, "failures": failures, "webhooks_posted": state.webhooks_posted}
    )


async def reset(request: web.Request) -> web.Response:
    state = request.app[WHATSAPP_STATE]
    state.sent.clear()
    state.failures.clear()
    return web.json_response({"reset": True})


def mount_whatsapp(
    app: web.Application,
    settings: WhatsAppSimulatorSettings,
    gateway_url: str,
    callback_delay: float = 0.02,
    sink: bool = False,
) -> None:
    """Add the fake Graph API and its ``/simulator/whatsapp/*`` controls to the simulator app."""
    app[WHATSAPP_STATE] = WhatsAppSimulatorState(settings, gateway_url, callback_delay, sink)
    app.router.add_post(r"/{version:v[0-9]+\.[0-9]+}/{phone_number_id}/messages", send_message)
    app.router.add_post("/simulator/whatsapp/fail", script_failure)
    app.router.add_post("/simulator/whatsapp/inbound", customer_inbound)
    app.router.add_get("/simulator/whatsapp/messages", list_sent)
    app.router.add_post("/simulator/whatsapp/reset", reset)
    with_client_session(app, WHATSAPP_STATE)
