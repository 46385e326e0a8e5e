"""Per-API-key rate limit: a token bucket in Redis shared by every gateway process, 429 when empty."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.asyncio import Redis

from conversations.access import ApiKeyGrant
from conversations.store import Keys
from gateway.auth import bearer_token
from gateway.errors import ApiError
from gateway.services import SERVICES

# KEYS[1] = bucket hash. ARGV: rate per second, burst, cost. Returns {allowed, seconds to wait}.
# Milliseconds from Redis' clock, so every gateway refills the bucket the same way.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = (cost - tokens) / rate / 1000
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, tostring(wait)}
"""


class RateLimiter:
    """Token buckets per API key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, redis: Redis, keys: Keys, *, rate: float, burst: int) -> None:
        self._keys = keys
        self._rate = rate
        self._burst = burst
        self._take = redis.register_script(_TAKE)

    async def check(
        self, grant: ApiKeyGrant, cost: int = 1, *, taken: int = 0, field: str | None = None
    ) -> None:
        """Take ``cost`` tokens for ``grant``'s key; 429 with Retry-After when its bucket lacks them.

        ``taken``: tokens this request already paid. A request costing more in all than the key's
        bucket can ever hold is a 422 naming ``field``: retrying cannot help.
        """
        rate = self._rate if grant.rate_per_second is None else grant.rate_per_second
        burst = self._burst if grant.burst is None else grant.burst
        if rate <= 0 or cost <= 0:
            return
        if cost + taken > burst:
            raise ApiError(
                422,
                "exceeds_rate_limit_burst",
                f"this request costs {cost + taken} against this API key's burst of {burst}; send fewer items",
                field,
            )
        allowed, wait = await self._take(keys=[self._keys.rate_limit(grant.key_id)], args=[rate, burst, cost])
        if not int(allowed):
            retry_after = max(1, math.ceil(float(wait)))
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for this API key (limit {rate:g}/s, burst {burst}); retry later",
                headers={"Retry-After": str(retry_after)},
            )


@web.middleware
async def rate_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Limit every ``/v1`` request of a known key (one token; a batch charges its other items
    itself); unknown keys fall through to the handler's 401."""
    if request.path.startswith("/v1/"):
        services = request.app[SERVICES]
        token = bearer_token(request)
        grant = services.api_keys.identify(token) if token else None
        if grant is not None:
            await services.rate_limiter.check(grant)
    return await handler(request)
