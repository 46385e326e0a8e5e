"""API keys: stored as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from aiohttp import web

from gateway.errors import ApiError


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The set of accepted API keys (only their digests are kept in memory)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [digest(key) for key in keys if key]

    def accepts(self, key: str) -> bool:
        candidate = digest(key)
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(candidate, known)
        return found

    def require(self, request: web.Request) -> None:
        """Raise 401 unless the request carries ``Authorization: Bearer <accepted key>``."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "unauthorized",
                "missing API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not self.accepts(token.strip()):
            raise ApiError(401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": "Bearer"})
