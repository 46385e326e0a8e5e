"""The shared resources of one gateway process, opened and closed with the app."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2
from aiohttp import web
from redis.asyncio import Redis

from channels.templates import TemplateRenderer
from conversations.config import Config
from conversations.slots import SlotMap
from conversations.store import Keys
from conversations.thread import ThreadReader
from gateway.auth import ApiKeys
from gateway.idempotency import IdempotencyStore
from gateway.ingest_writer import IngestWriter
from gateway.rate_limit import RateLimiter
from gateway.templating import page_environment


@dataclass(slots=True)
class ReadinessCache:
    """The last ``/readyz`` answer of this process and when it was probed (monotonic seconds)."""

    answer: Any = None
    at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class Services:
    """Everything a handler needs; built once per app by ``gateway.app.create_app``."""

    config: Config
    slot_map: SlotMap  # built once from the config: which shard owns each slot
    redis: Redis
    keys: Keys
    ingest: IngestWriter
    reader: ThreadReader
    api_keys: ApiKeys
    clock: Callable[[], float]
    idempotency: IdempotencyStore
    rate_limiter: RateLimiter
    shard_actors: list[Any] = field(default_factory=list)
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    pages: jinja2.Environment = field(default_factory=page_environment)
    templates: TemplateRenderer = field(default_factory=TemplateRenderer)
    readiness: ReadinessCache = field(default_factory=ReadinessCache)


SERVICES = web.AppKey("services", Services)
