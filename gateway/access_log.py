"""The ``--access-log`` line, with the secrets some URLs carry replaced by ``[redacted]``.

The email webhook's ``?secret=``, WhatsApp's ``hub.verify_token`` and the signed tokens of
preference links (``/preferences/{token}``) and tracked links (``/t/{token}``, ``/t/o/{token}.gif``)
each let whoever reads the log act as their holder, so they never reach it — in the request line
or in a ``Referer`` header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from aiohttp import web
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

REDACTED = "[redacted]"
# Path segments that are bearer tokens: the preference page and tracked links.
_TOKEN_PATHS = re.compile(r"(/preferences/|/t/o/|/t/)(?!o/)[^/?#\s\"]+?(\.gif)?(?=[/?#\s\"]|$)")
# Query parameters whose names say they hold a credential.
_SECRET_PARAMS = re.compile(
    r"([?&;](?:[^=&;#\s\"]*?(?:secret|token|signature|password|api[_-]?key)[^=&;#\s\"]*)=)[^&;#\s\"]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` (a request line or URL) with token path segments and secret query values redacted."""
    text = _TOKEN_PATHS.sub(lambda m: f"{m[1]}{REDACTED}{m[2] or ''}", text)
    return _SECRET_PARAMS.sub(lambda m: f"{m[1]}{REDACTED}", text)


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access logger (same format and fields), every logged string passed through ``redact``."""

    def _format_line(
        self, request: BaseRequest, response: StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        return [
            (key, redact(value) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]


def gateway_runner(app: web.Application, access_log: bool) -> web.AppRunner:
    """The runner that serves a gateway app; with ``access_log``, one redacted line per request."""
    if not access_log:
        return web.AppRunner(app, access_log=None)
    return web.AppRunner(
        app, access_log=logging.getLogger("aiohttp.access"), access_log_class=RedactingAccessLogger
    )
