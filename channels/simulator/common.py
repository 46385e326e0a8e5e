"""Pieces every provider fake in the simulator shares: Twilio-style auth and errors, and the
HTTP client each fake uses to call the gateway back."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
from aiohttp import web


def twilio_error(status: int, code: int, message: str) -> web.Response:
    """An error body as Twilio's REST API answers it."""
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return web.json_response({**body, "status": status}, status=status)


def basic_auth_ok(request: web.Request, user: str, password: str) -> bool:
    """Whether the request carries HTTP basic auth for ``user``/``password`` (constant-time)."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return False
    return given_user == user and secrets.compare_digest(given_password, password)


class CallsBack(Protocol):
    """A fake's state: the client it calls the gateway with, and its callback tasks."""

    session: aiohttp.ClientSession | None
    tasks: set[Any]


def with_client_session(app: web.Application, key: web.AppKey[Any]) -> None:
    """Open the fake's client session with the app; on cleanup cancel its callbacks and close it."""

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        state: CallsBack = app[key]
        state.session = aiohttp.ClientSession()
        yield
        for task in list(state.tasks):
            task.cancel()
        await state.session.close()

    app.cleanup_ctx.append(client_session)
