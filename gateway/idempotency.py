"""``Idempotency-Key`` for POST endpoints, with Stripe's semantics.

Same key and same request → the first response again (same status and body); same key with
another request → 422 ``idempotency_key_reused``; a duplicate arriving while the first is still
running waits briefly, then gets 409 ``idempotency_key_in_use``. Keys are scoped to the API key
that sent them and kept ``ttl`` seconds.

The key is reserved atomically (a Lua script) with a lease. A request that crashes after its
write but before saving its response leaves the key pending; once the lease runs out a retry
takes it over with the same *seed*, so the handler derives the same resource id and the same
ingest dedupe key, and the retry answers as the first would have without writing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from aiohttp import web
from redis.asyncio import Redis

from conversations.ids import ulid
from conversations.store import Keys
from gateway.errors import ApiError, check_json_depth

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
POLL_SECONDS = 0.05

# KEYS[1] = record. ARGV: fingerprint, token, seed, lease ms, ttl s.
# Returns {"new"|"takeover", seed} | {"done", status, content type, body} | {"mismatch"} | {"busy"}.
# Redis' own clock decides leases, so gateways with skewed clocks agree.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local f = redis.call('HMGET', KEYS[1], 'state', 'fp', 'seed', 'lease', 'status', 'ctype', 'body')
if not f[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[1], 'token', ARGV[2], 'seed', ARGV[3],
             'lease', now + tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {'new', ARGV[3]}
end
if f[2] ~= ARGV[1] then return {'mismatch'} end
if f[1] == 'done' then return {'done', f[5], f[6], f[7]} end
if tonumber(f[4]) <= now then
  redis.call('HSET', KEYS[1], 'token', ARGV[2], 'lease', now + tonumber(ARGV[4]))
  return {'takeover', f[3]}
end
return {'busy'}
"""

# KEYS[1] = record. ARGV: token, status, content type, body, ttl s. Only the holder may finish.
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[2], 'ctype', ARGV[3], 'body', ARGV[4])
redis.call('HDEL', KEYS[1], 'token', 'lease')
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS[1] = record. ARGV: token, mode. "forget": nothing was done, drop the key (the client may
# fix its request and reuse it); "yield": the outcome is unknown, keep the seed, end the lease.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if ARGV[2] == 'forget' then redis.call('DEL', KEYS[1]) else redis.call('HSET', KEYS[1], 'lease', 0) end
return 1
"""


class Reservation(msgspec.Struct, frozen=True):
    """The right to run one idempotent request; ``seed`` is the same on every retry of it."""

    record_key: str
    token: str
    seed: str

    def resource_id(self, prefix: str) -> str:
        """The id of the resource this request creates, stable across retries (``msg_`` + seed)."""
        return prefix + self.seed

    @property
    def dedupe_key(self) -> str:
        """An ingest dedupe key for this request's one write, stable across retries."""
        return "idem:" + hashlib.sha256(self.record_key.encode()).hexdigest()[:40]


Action = Callable[[Reservation | None], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str
    seed: str = ""
    response: web.Response | None = None


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """A digest of what the request asks for; JSON bodies are canonical (key order ignored)."""
    canonical = body
    if body:
        check_json_depth(body)
        with contextlib.suppress(msgspec.DecodeError):
            canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def _valid_key(raw: str) -> str:
    if not 1 <= len(raw) <= MAX_KEY_LENGTH or not raw.isprintable() or not raw.isascii():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            HEADER,
        )
    return raw


class IdempotencyStore:
    """Runs POST handlers at most once per (API key, Idempotency-Key) and replays their answer."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        ttl: int,
        lease: float = 30.0,
        wait: float = 2.0,
    ) -> None:
        self._keys = keys
        self._ttl = ttl
        self._lease_ms = max(1, int(lease * 1000))
        self._wait = wait
        self._reserve = redis.register_script(_RESERVE)
        self._complete = redis.register_script(_COMPLETE)
        self._release = redis.register_script(_RELEASE)

    async def run(self, request: web.Request, owner: str, body: bytes, action: Action) -> web.Response:
        """Answer ``request`` through ``action`` once per Idempotency-Key (plain call without one).

        ``owner`` names the API key; ``body`` is the raw request body. ``action`` must derive
        its resource ids and dedupe key from the reservation it gets, and must raise a 4xx
        ApiError only before it has written anything.
        """
        raw_key = request.headers.get(HEADER)
        if raw_key is None:
            return await action(None)
        key = _valid_key(raw_key)
        record_key = self._keys.idempotency(owner, hashlib.sha256(key.encode()).hexdigest())
        fingerprint = request_fingerprint(request.method, request.path, body)
        token = ulid()
        outcome = await self._reserve_or_wait(record_key, fingerprint, token)
        if outcome.response is not None:
            return outcome.response
        reservation = Reservation(record_key, token, outcome.seed)
        try:
            response = await action(reservation)
        except ApiError as exc:
            await self._let_go(reservation, "forget" if exc.status < 500 else "yield")
            raise
        except BaseException:
            await self._let_go(reservation, "yield")
            raise
        if response.status >= 400 or response.body is None or not isinstance(response.body, bytes):
            await self._let_go(reservation, "forget" if response.status < 500 else "yield")
            return response
        await self._complete(
            keys=[record_key],
            args=[token, response.status, response.content_type, response.body, self._ttl],
        )
        return response

    async def _reserve_or_wait(self, record_key: str, fingerprint: str, token: str) -> _Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while True:
            seed = ulid()
            reply = await self._reserve(
                keys=[record_key], args=[fingerprint, token, seed, self._lease_ms, self._ttl]
            )
            kind = reply[0].decode()
            if kind in ("new", "takeover"):
                if kind == "takeover":
                    log.info("idempotency key %s: taking over an expired lease", record_key[-12:])
                return _Outcome(kind, seed=reply[1].decode())
            if kind == "done":
                return _Outcome(kind, response=_replay(int(reply[1]), reply[2].decode(), reply[3]))
            if kind == "mismatch":
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    f"this {HEADER} was already used with a different request",
                    HEADER,
                )
            if loop.time() >= deadline:
                raise ApiError(
                    409,
                    "idempotency_key_in_use",
                    f"a request with this {HEADER} is still in progress; retry shortly",
                    HEADER,
                    headers={"Retry-After": "1"},
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _let_go(self, reservation: Reservation, mode: str) -> None:
        # Best effort: if Redis is gone too, the lease simply runs out.
        with contextlib.suppress(Exception):
            await self._release(keys=[reservation.record_key], args=[reservation.token, mode])


def _replay(status: int, content_type: str, body: bytes) -> web.Response:
    return web.Response(
        status=status, body=body, content_type=content_type, headers={REPLAYED_HEADER: "true"}
    )
