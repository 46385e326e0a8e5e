"""API key grants: which scopes a key has, parsed from the config (plain data, no HTTP)."""

from __future__ import annotations

import enum
import hashlib
import re

import msgspec

# Anything after the last ":" made only of letters and "+" is a scope list, and must be a valid
# one: a typo there must fail the config, not silently grant a key every scope. Scope names may
# hold a ":" themselves (``customers:write``), so a known scope list after an earlier ":" wins.
_SCOPED = re.compile(r"^(?P<key>.+):(?P<scopes>[a-z+]+)$")
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Scope(enum.StrEnum):
    """What an API key may do: send messages, read threads, change customers (merge, preferences),
    or administer (implies every other scope)."""

    SEND = "send"
    READ = "read"
    CUSTOMERS_WRITE = "customers:write"
    ADMIN = "admin"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)


class ApiKeySpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A key in the config as a table: the key itself or only its SHA-256 (hex), and its scopes."""

    key: str = ""
    sha256: str = ""
    scopes: list[Scope] = msgspec.field(default_factory=lambda: sorted(ALL_SCOPES))
    name: str = ""
    rate_per_second: float | None = None  # None: the config's default rate
    burst: int | None = None


class ApiKeyGrant(msgspec.Struct, frozen=True):
    """One accepted key as kept in memory: only its digest, never the key."""

    digest: bytes
    scopes: frozenset[Scope]
    name: str = ""
    rate_per_second: float | None = None
    burst: int | None = None

    @property
    def key_id(self) -> str:
        """A stable, non-secret name for the key (names its Redis keys and log lines)."""
        return self.digest.hex()[:32]


def key_digest(key: str) -> bytes:
    """The SHA-256 of an API key: what is stored and compared."""
    return hashlib.sha256(key.encode()).digest()


def parse_api_key(entry: str | ApiKeySpec) -> ApiKeyGrant:
    """A config entry (``key``, ``key:send+read`` or a table) as a grant; ValueError when invalid.

    A bare key gets every scope, so ``THREADLINE_API_KEYS=k1,k2`` keeps working as before.
    """
    if isinstance(entry, str):
        key, names = _split_scoped(entry)
        if names is None:
            return ApiKeyGrant(key_digest(entry), ALL_SCOPES)
        return ApiKeyGrant(key_digest(key), _scopes(names))
    if bool(entry.key) == bool(entry.sha256):
        raise ValueError("an api_keys table needs exactly one of `key` or `sha256`")
    if entry.sha256 and not _HEX_DIGEST.match(entry.sha256.lower()):
        raise ValueError("api_keys sha256 must be 64 hex characters")
    if entry.rate_per_second is not None and entry.rate_per_second < 0:
        raise ValueError("api_keys rate_per_second must not be negative")
    digest = bytes.fromhex(entry.sha256.lower()) if entry.sha256 else key_digest(entry.key)
    return ApiKeyGrant(
        digest,
        _scopes(entry.scopes),
        entry.name,
        entry.rate_per_second,
        entry.burst,
    )


def _split_scoped(entry: str) -> tuple[str, list[str] | None]:
    """``key:scope+scope`` as (key, scope names); (entry, None) for a bare key."""
    known = {scope.value for scope in Scope}
    at = entry.find(":", 1)
    while at != -1:
        names = entry[at + 1 :].split("+")
        if all(name in known for name in names):
            return entry[:at], names
        at = entry.find(":", at + 1)
    match = _SCOPED.match(entry)  # scope-shaped but not valid: _scopes names the typo
    return (match["key"], match["scopes"].split("+")) if match else (entry, None)


def _scopes(names: list[str] | list[Scope]) -> frozenset[Scope]:
    if not names or not all(names):
        raise ValueError("an API key needs at least one scope")
    try:
        return frozenset(Scope(name) for name in names)
    except ValueError:
        known = ", ".join(scope.value for scope in Scope)
        raise ValueError(f"unknown scope in {'+'.join(names)!r}; known scopes: {known}") from None


def grants(scopes: frozenset[Scope], wanted: Scope) -> bool:
    """Whether a key with ``scopes`` may act under ``wanted`` (admin may do everything)."""
    return wanted in scopes or Scope.ADMIN in scopes


def first_plain_key(entries: list[str | ApiKeySpec]) -> str | None:
    """The first key given in clear text (for the ``serve`` banner), without its scopes."""
    for entry in entries:
        if isinstance(entry, str):
            return _split_scoped(entry)[0]
        if entry.key:
            return entry.key
    return None
