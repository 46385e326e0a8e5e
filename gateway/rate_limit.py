"""Per-API-key rate limit: a token bucket in Redis shared by every gateway process, 429 when empty."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence

from redis.asyncio import Redis

from conversations.access import ApiKeyGrant
from conversations.store import Keys
from gateway.errors import ApiError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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
    """Token buckets in Redis: per API key on ``/v1``, per client address on the public routes."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        rate: float,
        burst: int,
        address_rate: float = 0.0,
        address_burst: int = 1,
    ) -> None:
        self._keys = keys
        self._rate = rate
        self._burst = burst
        self._address_rate = address_rate
        self._address_burst = address_burst
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
        if rate > 0 and cost > 0 and cost + taken > burst:
            raise ApiError(
                422,
                "exceeds_rate_limit_burst",
                f"this request costs {cost + taken} against this API key's burst of {burst}; send fewer items",
                field,
            )
        await self._take_some(grant.key_id, rate, burst, cost, "for this API key")

    async def check_address(self, address: str) -> None:
        """Take one token for a client address on a route anyone may call (links, pages, probes)."""
        await self._take_some(
            f"addr:{address}", self._address_rate, self._address_burst, 1, "from this address"
        )

    async def _take_some(self, owner: str, rate: float, burst: int, cost: int, whose: str) -> None:
        if rate <= 0 or cost <= 0:
            return
        allowed, wait = await self._take(keys=[self._keys.rate_limit(owner)], args=[rate, burst, cost])
        if not int(allowed):
            retry_after = max(1, math.ceil(float(wait)))
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests {whose} (limit {rate:g}/s, burst {burst}); retry later",
                headers={"Retry-After": str(retry_after)},
            )


def client_address(peer: str | None, forwarded_for: str, trusted: Sequence[IPNetwork]) -> str:
    """Whom a request comes from: the peer, or behind trusted proxies the nearest untrusted hop
    of ``X-Forwarded-For``. IPv6 clients count per /64 (one host owns a whole /64)."""
    hops = [peer or ""]
    if trusted and _within(peer, trusted):
        hops = [peer or ""] + [hop.strip() for hop in reversed(forwarded_for.split(",")) if hop.strip()]
    address = next((hop for hop in hops if not _within(hop, trusted)), hops[-1])
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _within(address: str | None, networks: Sequence[IPNetwork]) -> bool:
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(parsed in network for network in networks)
