"""A local stand-in for Google's RBM API, speaking its wire format both ways.

It answers ``GET /v1/phones/{E.164}/capabilities`` (200 with features, or 404 for numbers
told not to be RCS-capable) and ``POST /v1/phones/{E.164}/agentMessages`` (bearer auth,
404 when the phone cannot get RCS); after a send it posts signed DELIVERED and READ
UserEvents to the gateway's webhook, inside Pub/Sub push envelopes, as RBM does; and on
request a simulated user sends a message (text, suggestion tap, location or file).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
from aiohttp import web

from channels.rcs_rbm import compute_signature
from channels.simulator.common import with_client_session

if TYPE_CHECKING:
    from channels.simulator.settings import SimulatorSettings

FEATURES = [
    "REVOCATION",
    "RICHCARD_STANDALONE",
    "RICHCARD_CAROUSEL",
    "ACTION_CREATE_CALENDAR_EVENT",
    "ACTION_DIAL",
    "ACTION_OPEN_URL",
    "ACTION_SHARE_LOCATION",
    "ACTION_VIEW_LOCATION",
]


class CapableScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/rcs/capable``: whether a phone has RCS.

    ``reachable: false`` keeps the capability check saying yes but makes sends answer 404
    (a stale capability), to exercise that path.
    """

    phone: str
    capable: bool = True
    reachable: bool = True


class SuggestionTap(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    postback_data: str = ""


class LocationShare(msgspec.Struct, forbid_unknown_fields=True):
    latitude: float
    longitude: float


class FileShare(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    mime_type: str = "image/jpeg"
    name: str = "IMG_0001.jpg"
    size: int = 120_000


class UserScript(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/rcs/inbound``: a user sends the agent one message."""

    from_: str = msgspec.field(name="from")
    text: str | None = None
    suggestion: SuggestionTap | None = None
    location: LocationShare | None = None
    file: FileShare | None = None


@dataclass
class RbmState:
    """What the RBM simulator has seen and been told."""

    settings: SimulatorSettings
    not_capable: set[str] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)
    capability_checks: list[str] = field(default_factory=list)
    events_posted: int = 0
    session: aiohttp.ClientSession | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)


RBM_STATE = web.AppKey("rbm_simulator_state", RbmState)


def _now() -> str:
    """RFC 3339 UTC with microseconds, as RBM writes times."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _google_error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": reason}}, status=status)


def _check_request(request: web.Request, state: RbmState) -> web.Response | None:
    """RBM's auth and agent checks; a Google error response when they fail."""
    expected = f"Bearer {state.settings.rbm_access_token}"
    if not secrets.compare_digest(request.headers.get("Authorization", ""), expected):
        return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    if request.query.get("agentId") != state.settings.rbm_agent_id:
        return _google_error(403, "PERMISSION_DENIED", "The caller does not have permission")
    return None


async def capabilities(request: web.Request) -> web.Response:
    """``GET /v1/phones/{E.164}/capabilities``."""
    state = request.app[RBM_STATE]
    refused = _check_request(request, state)
    if refused is not None:
        return refused
    if not request.query.get("requestId"):
        return _google_error(400, "INVALID_ARGUMENT", "requestId is required")
    phone = request.match_info["phone"]
    state.capability_checks.append(phone)
    if phone in state.not_capable:
        return _google_error(404, "NOT_FOUND", "Requested entity was not found.")
    return web.json_response({"features": FEATURES})


def _valid_content(body: Any) -> bool:
    content = body.get("contentMessage") if isinstance(body, dict) else None
    if not isinstance(content, dict):
        return False
    card = content.get("richCard", {}).get("standaloneCard", {}).get("cardContent")
    return bool(content.get("text")) or isinstance(card, dict)


async def agent_message(request: web.Request) -> web.Response:
    """``POST /v1/phones/{E.164}/agentMessages?messageId=…``."""
    state = request.app[RBM_STATE]
    refused = _check_request(request, state)
    if refused is not None:
        return refused
    message_id = request.query.get("messageId", "")
    try:
        uuid.UUID(message_id)
    except ValueError:
        return _google_error(400, "INVALID_ARGUMENT", "messageId must be a UUID")
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
    if not _valid_content(body):
        return _google_error(400, "INVALID_ARGUMENT", "contentMessage needs text or a richCard")
    phone = request.match_info["phone"]
    if phone in state.not_capable or phone in state.unreachable:
        return _google_error(404, "NOT_FOUND", "Requested entity was not found.")
    sent_at = _now()
    reply = {
        "name": f"phones/{phone}/agentMessages/{message_id}",
        "sendTime": sent_at,
        "contentMessage": body["contentMessage"],
    }
    if message_id in state.message_ids:  # RBM ignores a reused messageId: no second delivery
        return web.json_response(reply)
    state.message_ids.add(message_id)
    state.sent.append({"phone": phone, "message_id": message_id, "send_time": sent_at, **body})
    if not state.settings.sink:
        task = asyncio.create_task(_deliver(state, phone, message_id))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
    return web.json_response(reply)


def envelope(state: RbmState, payload: dict[str, Any]) -> tuple[bytes, str]:
    """A Pub/Sub push body carrying ``payload``, and its X-Goog-Signature."""
    data = msgspec.json.encode(payload)
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": str(secrets.randbelow(10**16)),
            "publishTime": _now(),
        },
        "subscription": f"projects/rbm-{state.settings.rbm_agent_id}/subscriptions/rbm-agent-subscription",
    }
    return msgspec.json.encode(body), compute_signature(state.settings.rbm_client_token, data)


async def _post_event(state: RbmState, payload: dict[str, Any]) -> int:
    """POST one signed push to the gateway, retrying as RBM does on failure; the last status."""
    body, signature = envelope(state, payload)
    headers = {"Content-Type": "application/json", "X-Goog-Signature": signature}
    assert state.session is not None
    status = 0
    for attempt in range(5):
        try:
            async with state.session.post(
                state.settings.gateway_url + "/webhooks/rcs", data=body, headers=headers
            ) as response:
                await response.read()
                status = response.status
            if status < 500:
                state.events_posted += 1
                return status
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2 * (attempt + 1))
    return status


async def _deliver(state: RbmState, phone: str, message_id: str) -> None:
    for event_type in ("DELIVERED", "READ"):
        await asyncio.sleep(state.settings.callback_delay)
        await _post_event(
            state,
            {
                "senderPhoneNumber": phone,
                "eventType": event_type,
                "eventId": "MS" + secrets.token_urlsafe(16),
                "messageId": message_id,
                "sendTime": _now(),
                "agentId": f"{state.settings.rbm_agent_id}@rbm.goog",
            },
        )


def _bad_script(exc: Exception) -> web.Response:
    return web.json_response({"error": {"code": "validation_failed", "message": str(exc)}}, status=422)


async def script_capable(request: web.Request) -> web.Response:
    state = request.app[RBM_STATE]
    try:
        script = msgspec.json.decode(await request.read(), type=CapableScript)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _bad_script(exc)
    for flag, members in ((script.capable, state.not_capable), (script.reachable, state.unreachable)):
        if flag:
            members.discard(script.phone)
        else:
            members.add(script.phone)
    return web.json_response(
        {"phone": script.phone, "capable": script.capable, "reachable": script.reachable}
    )


async def user_message(request: web.Request) -> web.Response:
    """A simulated user sends the agent a message; answers with what the gateway said."""
    state = request.app[RBM_STATE]
    try:
        script = msgspec.json.decode(await request.read(), type=UserScript)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _bad_script(exc)
    message_id = "MS" + secrets.token_urlsafe(16)
    payload: dict[str, Any] = {
        "senderPhoneNumber": script.from_,
        "messageId": message_id,
        "sendTime": _now(),
        "agentId": f"{state.settings.rbm_agent_id}@rbm.goog",
    }
    if script.suggestion is not None:
        payload["suggestionResponse"] = {
            "postbackData": script.suggestion.postback_data,
            "text": script.suggestion.text,
            "type": "REPLY",
        }
    elif script.location is not None:
        payload["location"] = msgspec.to_builtins(script.location)
    elif script.file is not None:
        payload["userFile"] = {
            "payload": {
                "mimeType": script.file.mime_type,
                "fileSizeBytes": script.file.size,
                "fileName": script.file.name,
                "fileUri": script.file.url,
            }
        }
    else:
        payload["text"] = script.text or ""
    status = await _post_event(state, payload)
    return web.json_response({"message_id": message_id, "gateway_status": status})


async def list_sent(request: web.Request) -> web.Response:
    state = request.app[RBM_STATE]
    to = request.query.get("to")
    sent = [m for m in state.sent if to is None or m["phone"] == to]
    checks = [p for p in state.capability_checks if to is None or p == to]
    return web.json_response(
        {"messages": sent, "capability_checks": len(checks), "events_posted": state.events_posted}
    )


def setup(app: web.Application, settings: SimulatorSettings) -> None:
    """Mount the RBM simulator's routes and its resources on the simulator app."""
    app[RBM_STATE] = RbmState(settings)
    app.router.add_get("/v1/phones/{phone}/capabilities", capabilities)
    app.router.add_post("/v1/phones/{phone}/agentMessages", agent_message)
    app.router.add_post("/simulator/rcs/capable", script_capable)
    app.router.add_post("/simulator/rcs/inbound", user_message)
    app.router.add_get("/simulator/rcs/messages", list_sent)
    with_client_session(app, RBM_STATE)
