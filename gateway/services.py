"""The shared resources of one gateway process, opened and closed with the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from redis.asyncio import Redis

from conversations.config import Config
from conversations.store import Keys
from conversations.thread import ThreadReader
from gateway.auth import ApiKeys
from gateway.idempotency import IdempotencyStore
from gateway.ingest import IngestWriter

if TYPE_CHECKING:  # rate_limit's middleware reads SERVICES from this module
    from gateway.rate_limit import RateLimiter


@dataclass(slots=True)
class Services:
    """Everything a handler needs; built once per app by ``gateway.app.create_app``."""

    config: Config
    redis: Redis
    keys: Keys
    ingest: IngestWriter
    reader: ThreadReader
    api_keys: ApiKeys
    clock: Callable[[], float]
    idempotency: IdempotencyStore
    rate_limiter: RateLimiter
    shard_actors: list[Any] = field(default_factory=list)


SERVICES = web.AppKey("services", Services)
