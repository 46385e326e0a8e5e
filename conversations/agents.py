"""Console agents: who may work conversations, known by the SHA-256 of their secret token.

Agents come from the config file (``[[agents]]`` with ``name`` and ``token_sha256``) or are
created at run time (``POST /v1/agents``, ``threadline agents create``); those live in Redis
until ``DELETE /v1/agents/{name}`` revokes them (and every gateway closes their open sockets).
A token is shown once, when it is made; only its digest is ever stored.

A sign-in link carries a one-time login token for an agent: redeeming it (once, before it
expires) gives the browser an agent token of its own, added beside the agent's others.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable

import msgspec
from redis.asyncio import Redis

from conversations.config import AgentConfig
from conversations.store import Keys

AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TOKEN_PREFIX = "tla_"
LOGIN_PREFIX = "tll_"


class AgentRecord(msgspec.Struct, frozen=True):
    """An agent created through the API, as stored."""

    name: str
    token_sha256: str
    created_at: float


class AgentExists(ValueError):
    """An agent with this name already exists."""


class AgentConfigured(ValueError):
    """The agent comes from the config file: only a new config (and restart) removes it."""


def token_digest(token: str) -> str:
    """The hex SHA-256 of a token, the form in which tokens are configured and stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh agent token (256 bits of randomness)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class AgentDirectory:
    """Looks agents up by token and creates new ones."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        configured: Iterable[AgentConfig] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._configured = {agent.name: agent.token_sha256.lower() for agent in configured}
        self._clock = clock

    async def authenticate(self, token: str) -> str | None:
        """The name of the agent holding ``token``, or None."""
        if not token:
            return None
        digest = token_digest(token)
        found = None
        for name, known in self._configured.items():
            if hmac.compare_digest(digest, known):
                found = name
        if found is not None:
            return found
        # The digest is a hash key: looking it up leaks nothing usable about other tokens.
        name = await self._redis.hget(self._keys.agent_tokens(), digest)
        return name.decode() if name else None

    async def exists(self, name: str) -> bool:
        return name in self._configured or bool(await self._redis.hexists(self._keys.agents(), name))

    async def names(self) -> list[str]:
        """Every agent's name, sorted."""
        stored = await self._redis.hkeys(self._keys.agents())
        return sorted(set(self._configured) | {name.decode() for name in stored})

    async def create(self, name: str) -> str:
        """Create agent ``name`` and return its token (the only time it is visible)."""
        if name in self._configured:
            raise AgentExists(name)
        token = new_token()
        record = AgentRecord(name, token_digest(token), self._clock())
        created = await self._redis.hsetnx(self._keys.agents(), name, msgspec.msgpack.encode(record))
        if not created:
            raise AgentExists(name)
        await self._redis.hset(self._keys.agent_tokens(), record.token_sha256, name)
        return token

    async def issue_login(self, name: str, ttl_seconds: int) -> str:
        """A one-time login token for agent ``name``, valid ``ttl_seconds`` (for a sign-in link)."""
        token = LOGIN_PREFIX + secrets.token_urlsafe(32)
        await self._redis.set(self._keys.console_login(token_digest(token)), name, ex=ttl_seconds)
        return token

    async def redeem_login(self, login_token: str) -> tuple[str, str] | None:
        """Use a login token up (GETDEL: at most once); returns (agent, a new agent token), or None."""
        if not login_token.startswith(LOGIN_PREFIX):
            return None
        name = await self._redis.getdel(self._keys.console_login(token_digest(login_token)))
        if name is None or not await self.exists(name.decode()):
            return None
        token = new_token()
        await self._redis.hset(self._keys.agent_tokens(), token_digest(token), name)
        return name.decode(), token

    async def revoke(self, name: str) -> bool:
        """Remove agent ``name`` and its token; False when there is no such stored agent.

        The name is published on the revocation channel so every gateway closes its sockets.
        """
        if name in self._configured:
            raise AgentConfigured(name)
        blob = await self._redis.hget(self._keys.agents(), name)
        if blob is None:
            return False
        record = msgspec.msgpack.decode(blob, type=AgentRecord)
        # Its first token and every token a sign-in link gave a browser of its own.
        tokens = await self._redis.hgetall(self._keys.agent_tokens())
        digests = {
            record.token_sha256,
            *(d.decode() for d, owner in tokens.items() if owner.decode() == name),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys.agents(), name)
            pipe.hdel(self._keys.agent_tokens(), *digests)
            pipe.publish(self._keys.console_revoked(), name.encode())
            await pipe.execute()
        return True
