"""Console agents from the command line (``threadline agents``) and the dev sign-in link.

Talks to Redis directly, as the gateways do, so it works whether or not a gateway runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from redis.asyncio import Redis
from redis.exceptions import RedisError

from conversations.agents import AGENT_NAME, AgentDirectory, AgentExists
from conversations.config import Config
from conversations.store import Keys

DEV_AGENT = "dev"


def _directory(redis: Redis, config: Config) -> AgentDirectory:
    return AgentDirectory(redis, Keys(config.key_prefix), config.agents)


async def sign_in_link(config: Config, gateway_url: str, agent: str = DEV_AGENT) -> str:
    """A console link that signs in as ``agent`` once (the agent is created if it is missing)."""
    redis = Redis.from_url(config.redis_url)
    try:
        directory = _directory(redis, config)
        if not await directory.exists(agent):
            try:
                await directory.create(agent)  # its own token is never shown: the link signs in
            except AgentExists:
                pass  # another gateway process made it meanwhile
        login = await directory.issue_login(agent, config.console_login_ttl_seconds)
    finally:
        await redis.aclose()
    return f"{gateway_url}/console#login={login}"


async def _create(config: Config, name: str) -> int:
    if not AGENT_NAME.match(name):
        print(f"threadline: invalid agent name {name!r}: {AGENT_NAME.pattern}", file=sys.stderr)
        return 2
    redis = Redis.from_url(config.redis_url)
    try:
        token = await _directory(redis, config).create(name)
    except AgentExists:
        print(f"threadline: an agent named {name} already exists", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    print(f"Agent {name} created. Its token (shown this once; only its SHA-256 is stored):")
    print(token)
    return 0


async def _list(config: Config) -> int:
    redis = Redis.from_url(config.redis_url)
    try:
        names = await _directory(redis, config).names()
    finally:
        await redis.aclose()
    for name in names:
        print(name)
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    """``threadline agents create NAME`` / ``threadline agents list``: the exit status."""
    try:
        if args.action == "create":
            return asyncio.run(_create(config, args.name))
        return asyncio.run(_list(config))
    except (RedisError, OSError) as exc:
        print(f"threadline: cannot reach Redis at {config.redis_url}: {exc}", file=sys.stderr)
        return 1
