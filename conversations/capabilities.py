"""A TTL cache of "can this address receive this channel?" answers (e.g. the RBM capability check).

Asking the provider before every send costs a round trip and counts against its quota; the
answer changes rarely (a user turns RCS on or off), so it is kept in Redis for a while and
shared by every shard.
"""

from __future__ import annotations

from redis.asyncio import Redis

from conversations.models import Channel
from conversations.store import Keys

_CAPABLE = b"1"
_NOT_CAPABLE = b"0"


class CapabilityCache:
    """Per-address channel capability, cached with a TTL."""

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = max(1, ttl_seconds)

    async def get(self, channel: Channel, address: str) -> bool | None:
        """The cached answer, or None when unknown or expired."""
        value = await self._redis.get(self._keys.capability(channel.value, address))
        if value is None:
            return None
        return value == _CAPABLE

    async def set(self, channel: Channel, address: str, capable: bool) -> None:
        """Remember the provider's answer for the TTL."""
        value = _CAPABLE if capable else _NOT_CAPABLE
        await self._redis.set(self._keys.capability(channel.value, address), value, ex=self._ttl)
