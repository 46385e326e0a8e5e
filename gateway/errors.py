"""JSON error bodies for every 4xx/5xx: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from channels.inbound import validation_field

log = logging.getLogger(__name__)

REDIS_RETRY_AFTER_SECONDS = "5"
MAX_JSON_DEPTH = 32
# Escapes are dropped first (each a fixed two-byte match), so a string is then simply quote to
# quote: both passes are linear. One regex doing both backtracks from every escaped quote of an
# unterminated string, which made a 1 MB body take an hour.
_JSON_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_JSON_STRING = re.compile(rb'"[^"]*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    details: dict[str, object] | None = None


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


class ApiError(Exception):
    """Raise from a handler to answer with a JSON error."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict | None = None,
    details: dict[str, object] | None = None,
) -> web.Response:
    body = msgspec.json.encode(ErrorEnvelope(ErrorBody(code, message, field, details)))
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def validation_error(exc: msgspec.ValidationError) -> ApiError:
    """A msgspec validation error as a 422 naming the field (``$.to.phone`` → ``to.phone``)."""
    message, path = validation_field(exc)
    return ApiError(422, "validation_failed", message, path)


def json_depth(body: bytes) -> int:
    """How deeply arrays/objects nest in a JSON text (brackets inside strings do not count)."""
    if b"[" not in body and b"{" not in body:
        return 0
    brackets = _JSON_BRACKET.findall(_JSON_STRING.sub(b"", _JSON_ESCAPE.sub(b"", body)))
    steps = (_DEPTH_STEP[bracket[0]] for bracket in brackets)
    return max(itertools.accumulate(steps, initial=0))


def check_json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse deeply nested JSON before any decoder recurses into it."""
    if json_depth(body) > limit:
        raise ApiError(400, "json_too_deep", f"JSON nests deeper than {limit} levels")


def decode_json_body(body: bytes, type_: type):
    """Decode a JSON request body into ``type_``; 400 for bad or too deep JSON, 422 for a bad shape."""
    if not body:
        raise ApiError(400, "empty_body", "request body is empty; JSON expected")
    check_json_depth(body)
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.text is None or exc.text.startswith(f"{exc.status}:") else exc.text
        return error_response(exc.status, code, message or exc.reason, headers=_allow(exc))
    except (RedisError, OSError, TimeoutError) as exc:
        if not storage_unavailable(exc):
            log.exception("unhandled storage error on %s %s", request.method, request.path)
            return error_response(500, "internal_error", "internal error")
        # Nothing was stored: the provider (or client) must retry, so never 2xx and never 500.
        log.warning("storage unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
        return error_response(
            503,
            "storage_unavailable",
            "message store is unreachable; nothing was stored, retry later",
            headers={"Retry-After": REDIS_RETRY_AFTER_SECONDS},
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error")


_UNAVAILABLE = (
    RedisConnectionError,  # includes BusyLoadingError: Redis is replaying its AOF after a restart
    RedisTimeoutError,
    ReadOnlyError,  # a failover left us talking to a replica
    ClusterDownError,
    TryAgainError,
    MasterDownError,
    OSError,
    TimeoutError,
)
_UNAVAILABLE_REPLIES = ("OOM ", "MISCONF ", "LOADING ")


def storage_unavailable(exc: BaseException) -> bool:
    """Whether an error means Redis cannot take writes right now (answer 503, the caller retries)."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES)


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None
