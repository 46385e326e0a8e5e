"""API keys: stored as SHA-256 digests, compared in constant time, each with its scopes."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web

from conversations.access import ApiKeyGrant, ApiKeySpec, Scope, grants, key_digest, parse_api_key
from gateway.errors import ApiError


def digest(key: str) -> bytes:
    return key_digest(key)


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class ApiKeys:
    """The accepted API keys (only their digests are kept in memory) and their scopes."""

    def __init__(self, entries: Iterable[str | ApiKeySpec]) -> None:
        self._grants = [parse_api_key(entry) for entry in entries if entry]

    def identify(self, key: str) -> ApiKeyGrant | None:
        """The grant of ``key``; every known digest is compared, so timing tells nothing."""
        candidate = digest(key)
        found: ApiKeyGrant | None = None
        for grant in self._grants:
            if hmac.compare_digest(candidate, grant.digest):
                found = grant
        return found

    def accepts(self, key: str) -> bool:
        return self.identify(key) is not None

    def require(self, request: web.Request, scope: Scope | None = None) -> ApiKeyGrant:
        """The caller's grant; 401 without an accepted key, 403 when it lacks ``scope``."""
        token = bearer_token(request)
        if token is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        grant = self.identify(token)
        if grant is None:
            raise ApiError(401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        if scope is not None and not grants(grant.scopes, scope):
            raise ApiError(403, "insufficient_scope", f"this API key lacks the {scope.value!r} scope")
        return grant
