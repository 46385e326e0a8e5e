"""Routes declared once: method, path, scope and OpenAPI operation in one decorator.

Each route module keeps an ``Endpoints`` table; the app factory mounts it and ``/openapi.json``
is built from the same entries, so the document cannot drift from what is served. A ``/v1``
route's scope is enforced by the declaration itself, before the handler runs.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from conversations.access import ApiKeyGrant, Scope
from gateway.auth import ApiKeys
from gateway.errors import ErrorEnvelope
from gateway.services import SERVICES

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
XML = "text/xml"
TEXT = "text/plain"
ANY_OBJECT = dict  # a JSON object whose shape is not (yet) a struct

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KeySource = Callable[[web.Request], ApiKeys]
GRANT = web.RequestKey("grant", ApiKeyGrant)  # the caller's grant, once a declared scope allowed it
_UNDOCUMENTED_PREFIXES = ("/v1/", "/webhooks/")


class Security(enum.StrEnum):
    """How a caller proves who it is (the OpenAPI security scheme)."""

    NONE = "none"
    API_KEY = "apiKey"
    TWILIO_SIGNATURE = "twilioSignature"


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter."""

    name: str
    where: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route: what it takes, what it answers, and who may call it."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, tuple[str, Any, str]]  # status -> (description, struct or None, media type)
    scope: Scope | None = None  # None: no API key (public, or signed by a provider)
    security: Security = Security.NONE
    body: type | None = None
    body_media: str = JSON
    params: tuple[Param, ...] = ()
    response_headers: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


_DESCRIBED_ERRORS = {
    400: "Malformed request (bad JSON, JSON too deep, bad header)",
    401: "Missing or unknown API key",
    403: "The key lacks the scope, or the provider signature does not match",
    404: "No such resource",
    409: "Conflicts with what exists; `code` says what (e.g. `agent_exists`, `identifier_conflict`)",
    413: "Request body larger than 1 MiB",
    415: "Wrong content type",
    422: "Well-formed but invalid input; `field` names it",
    429: "Rate limit of this API key reached; see Retry-After",
    503: "The message store is unreachable; nothing was stored, retry after Retry-After",
}
API_ERRORS = (400, 401, 403, 413, 429, 503)
HOOK_ERRORS = (400, 403, 413, 415, 503)
RETRY_AFTER: dict[int, tuple[str, ...]] = {
    429: ("Retry-After",),
    503: ("Retry-After",),
}
# A route that takes an Idempotency-Key also answers 409 while a duplicate still runs.
IDEMPOTENT_CONFLICT = "A request with this Idempotency-Key is still running"
_HOOK_HEADERS: dict[int, tuple[str, ...]] = {503: ("Retry-After",)}


def errors(*statuses: int) -> dict[int, tuple[str, Any, str]]:
    """The documented JSON error answers for these statuses."""
    return {status: (_DESCRIBED_ERRORS[status], ErrorEnvelope, JSON) for status in statuses}


def hook_endpoint(
    method: str,
    path: str,
    operation_id: str,
    summary: str,
    ok: tuple[str, Any, str],
    body: type | None = None,
    media: str = JSON,
    params: tuple[Param, ...] = (),
    security: Security = Security.NONE,
    error_statuses: tuple[int, ...] = HOOK_ERRORS,
) -> Endpoint:
    """A provider webhook: signed by the provider, answered in the provider's format."""
    return Endpoint(
        method,
        path,
        operation_id,
        summary,
        "webhooks",
        {200: ok, **errors(*error_statuses)},
        security=security,
        body=body,
        body_media=media,
        params=params,
        response_headers=_HOOK_HEADERS,
    )


class Endpoints:
    """The routes of one module, each declared once; the app mounts them, the document reads them."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, str, Handler, Endpoint | None]] = []

    def api(
        self,
        method: str,
        path: str,
        operation_id: str,
        summary: str,
        tag: str,
        scope: Scope,
        ok: tuple[int, str, Any],
        error_statuses: tuple[int, ...] = (),
        body: type | None = None,
        params: tuple[Param, ...] = (),
        also_ok: tuple[int, ...] = (),
        keys: KeySource | None = None,
    ) -> Callable[[Handler], Handler]:
        """A ``/v1`` route: an API key with ``scope`` (from ``keys``, default the API keys), JSON in and out."""
        status, description, struct = ok
        answers = {code: (description, struct, JSON) for code in (status, *also_ok)}
        responses = {**answers, **errors(*error_statuses, *API_ERRORS)}
        headers = RETRY_AFTER
        if any(param.name == "Idempotency-Key" for param in params):
            responses[409] = (IDEMPOTENT_CONFLICT, ErrorEnvelope, JSON)
            headers = {**RETRY_AFTER, 409: ("Retry-After",)}
        endpoint = Endpoint(
            method,
            path,
            operation_id,
            summary,
            tag,
            responses,
            scope=scope,
            security=Security.API_KEY,
            body=body,
            params=params,
            response_headers=headers,
        )

        def register(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def guarded(request: web.Request) -> web.StreamResponse:
                source = keys(request) if keys is not None else request.app[SERVICES].api_keys
                request[GRANT] = source.require(request, scope)
                return await handler(request)

            self._routes.append((method, path, guarded, endpoint))
            return handler

        return register

    def documented(self, endpoint: Endpoint) -> Callable[[Handler], Handler]:
        """A route whose handler does its own checks (probes, the console socket), as documented."""
        return self._register(endpoint.method, endpoint.path, endpoint)

    def page(self, method: str, path: str) -> Callable[[Handler], Handler]:
        """A route outside the API (HTML pages, tracking pixels): served, not in the document."""
        if path.startswith(_UNDOCUMENTED_PREFIXES):
            raise ValueError(f"{path} is part of the API: declare it with api() or documented()")
        return self._register(method, path, None)

    def add(self, endpoint: Endpoint, handler: Handler) -> None:
        """Serve ``handler`` for ``endpoint`` (for handlers built at run time, like webhooks')."""
        self._routes.append((endpoint.method, endpoint.path, handler, endpoint))

    def _register(self, method: str, path: str, endpoint: Endpoint | None) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._routes.append((method, path, handler, endpoint))
            return handler

        return register

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """What the OpenAPI document describes, in declaration order."""
        return tuple(endpoint for *_, endpoint in self._routes if endpoint is not None)

    def route_defs(self) -> list[web.RouteDef]:
        """The aiohttp routes to mount."""
        return [web.route(method, path, handler) for method, path, handler, _ in self._routes]
