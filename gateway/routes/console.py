"""The agent console: the page, its WebSocket (``/v1/console/ws``), sign-in links and agent creation."""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

import msgspec
from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from conversations.access import Scope
from conversations.agents import AGENT_NAME, AgentConfigured, AgentExists
from gateway.console import CONSOLE, Console
from gateway.console.frames import MAX_NOTE_CHARS, Auth, Welcome, decode_client_frame
from gateway.console.session import CLOSE_POLICY, ConsoleSocket
from gateway.endpoints import JSON, Endpoint, Endpoints, Param, errors
from gateway.errors import ApiError, decode_json_body
from gateway.routes.messages import json_response

log = logging.getLogger(__name__)

routes = Endpoints()

AUTH_TIMEOUT_SECONDS = 10.0
HEARTBEAT_SECONDS = 25.0
CLOSE_INTERNAL_ERROR = 1011
MAX_FRAME_BYTES = 4 * MAX_NOTE_CHARS + 4096  # the largest valid frame is a note, in UTF-8


class NewAgent(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/agents``."""

    name: Annotated[str, msgspec.Meta(pattern=AGENT_NAME.pattern)]


class CreatedAgent(msgspec.Struct):
    name: str
    token: str  # shown once: only its SHA-256 is stored


class ConsoleLogin(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/console/login``: the one-time token of a sign-in link."""

    login_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SignedIn(msgspec.Struct):
    agent: str
    token: str  # an agent token of this browser's own


class RevokedAgent(msgspec.Struct):
    name: str
    revoked: bool


@routes.api(
    "POST",
    "/v1/agents",
    "createAgent",
    "Create a console agent; its token is shown once",
    "console",
    Scope.ADMIN,
    (201, "The agent and its token", CreatedAgent),
    (409, 422),
    body=NewAgent,
)
async def create_agent(request: web.Request) -> web.Response:
    """Create a console agent (an API key with the ``admin`` scope); answers with its token, once."""
    console = request.app[CONSOLE]
    command = decode_json_body(await request.read(), NewAgent)
    try:
        token = await console.agents.create(command.name)
    except AgentExists:
        raise ApiError(409, "agent_exists", f"an agent named {command.name} already exists", "name") from None
    return json_response(CreatedAgent(command.name, token), status=201)


@routes.documented(
    Endpoint(
        "POST",
        "/v1/console/login",
        "consoleLogin",
        "Exchange the one-time token of a console sign-in link for an agent token (no API key)",
        "console",
        {200: ("Signed in", SignedIn, JSON), **errors(400, 403, 413, 422, 429, 503)},
        body=ConsoleLogin,
    )
)
async def console_login(request: web.Request) -> web.Response:
    """Redeem a sign-in link's login token (once); the page keeps the agent token it gets back."""
    command = decode_json_body(await request.read(), ConsoleLogin)
    signed_in = await request.app[CONSOLE].agents.redeem_login(command.login_token)
    if signed_in is None:
        raise ApiError(
            403, "login_invalid", "this sign-in link was used already or has expired", "login_token"
        )
    return json_response(SignedIn(*signed_in))


@routes.api(
    "DELETE",
    "/v1/agents/{name}",
    "revokeAgent",
    "Revoke a console agent: its token stops working and its open sockets close",
    "console",
    Scope.ADMIN,
    (200, "The revoked agent", RevokedAgent),
    (404, 409),
    params=(Param("name", "path", {"type": "string"}, "The agent's name", True),),
)
async def revoke_agent(request: web.Request) -> web.Response:
    """Revoke an agent created through the API (admin API key required)."""
    console = request.app[CONSOLE]
    name = request.match_info["name"]
    try:
        revoked = await console.agents.revoke(name)
    except AgentConfigured:
        raise ApiError(
            409, "agent_configured", f"agent {name} is in the config file; remove it there", "name"
        ) from None
    if not revoked:
        raise ApiError(404, "agent_not_found", f"no agent named {name}", "name")
    console.hub.close_agent(name)  # this gateway's sockets at once; others hear it published
    return json_response(RevokedAgent(name, revoked=True))


@routes.page("GET", "/console")
async def console_page(request: web.Request) -> web.Response:
    """The agent console page; it signs in with an agent token and talks over the WebSocket."""
    template = request.app[CONSOLE].templates.get_template("console.html.j2")
    html = template.render(static=request.app.router["console_static"].url_for(filename="").path)
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            "Content-Security-Policy": (
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@routes.documented(
    Endpoint(
        "GET",
        "/v1/console/ws",
        "consoleSocket",
        "The agent console WebSocket (upgrade; agent token in the first frame or header)",
        "console",
        {101: ("Switching to the WebSocket protocol", None, JSON), **errors(400, 403, 429, 503)},
    )
)
async def console_socket(request: web.Request) -> web.WebSocketResponse:
    """One agent's connection: authenticate, then carry out frames until it closes."""
    console = request.app[CONSOLE]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    try:
        agent = await _authenticate(request, ws, console)
        agents = await console.agents.names() if agent else []
    except RedisError as exc:
        # The upgrade is done, so no HTTP error can be sent any more: close with 1011.
        log.warning("console: cannot authenticate, storage unavailable: %s", exc)
        await ws.close(code=CLOSE_INTERNAL_ERROR, message=b"storage unavailable; retry later")
        return ws
    if agent is None:
        return ws
    sock = ConsoleSocket(ws, agent, console.socket_queue)
    console.hub.add(sock)
    try:
        sock.send(Welcome(agent, sorted(console.commands.channels), agents))
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                if not await _still_an_agent(console, sock):
                    break
                await console.commands.handle_text(sock, message.data)
            elif message.type is WSMsgType.BINARY:
                sock.error("invalid_frame", "frames are JSON text, not binary")
            if sock.closed:
                break
    finally:
        console.hub.discard(sock)
        await sock.finish()
    return ws


async def _still_an_agent(console: Console, sock: ConsoleSocket) -> bool:
    """Whether the socket's agent still exists; a revoked agent's socket is closed (1008).

    The hub closes such sockets when the revocation is published; this check covers a frame
    that arrives before that (or a gateway that missed it).
    """
    try:
        if await console.agents.exists(sock.agent):
            return True
    except RedisError:
        return True  # nothing can be carried out without Redis; the command answers the error
    sock.close(CLOSE_POLICY, "agent revoked")
    return False


async def _authenticate(request: web.Request, ws: web.WebSocketResponse, console: Console) -> str | None:
    """The agent behind ``Authorization: Bearer`` or a first ``auth`` frame; else close 1008."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        agent = await console.agents.authenticate(token.strip())
        reason = "invalid agent token"
    else:
        agent, reason = await _first_frame_auth(ws, console)
    if agent is None:
        with contextlib.suppress(ConnectionError):
            await ws.close(code=CLOSE_POLICY, message=reason.encode())
    return agent


async def _first_frame_auth(ws: web.WebSocketResponse, console: Console) -> tuple[str | None, str]:
    # Browsers cannot set headers on a WebSocket, and a token in the URL would end up in logs.
    try:
        message = await ws.receive(timeout=AUTH_TIMEOUT_SECONDS)
    except TimeoutError:
        return None, "authentication required: send an auth frame first"
    if message.type is not WSMsgType.TEXT:
        return None, "authentication required: send an auth frame first"
    try:
        frame = decode_client_frame(message.data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        frame = None
    if not isinstance(frame, Auth):
        return None, "authentication required: the first frame must be auth"
    agent = await console.agents.authenticate(frame.token)
    return agent, "invalid agent token"
