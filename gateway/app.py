"""The gateway application factory: routes, middlewares and resources in one place."""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from aiohttp import web
from redis.asyncio import Redis

from conversations.config import Config
from conversations.journeys.registry import publish_directory
from conversations.layout import check_slots
from conversations.segments.registry import publish_directory as publish_segments
from conversations.store import Keys
from conversations.thread import ThreadReader
from gateway.auth import ApiKeys
from gateway.console import setup_console
from gateway.errors import error_middleware
from gateway.idempotency import IdempotencyStore
from gateway.ingest_writer import IngestWriter
from gateway.openapi import document_bytes
from gateway.rate_limit import RateLimiter
from gateway.rate_limit_middleware import rate_limit_middleware
from gateway.routes.docs import OPENAPI_DOCUMENT
from gateway.routes.webhooks import webhook_routes
from gateway.services import SERVICES, Services
from gateway.surface import ROUTE_TABLES

MAX_BODY_BYTES = 1024 * 1024


def create_app(
    config: Config,
    shard_actors: list[Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build a gateway app for ``config``; Redis opens on startup and closes on cleanup."""
    app = web.Application(
        middlewares=[error_middleware, rate_limit_middleware], client_max_size=MAX_BODY_BYTES
    )
    if not config.secret_key:
        # Links signed with a throw-away key stop working on restart; `serve` persists one.
        config = msgspec.structs.replace(config, secret_key=secrets.token_urlsafe(32))
    for table in (*ROUTE_TABLES, webhook_routes(config)):
        app.add_routes(table.route_defs())
    app[OPENAPI_DOCUMENT] = document_bytes()

    async def resources(app: web.Application) -> AsyncIterator[None]:
        redis = Redis.from_url(config.redis_url, health_check_interval=30)
        keys = Keys(config.key_prefix)
        slot_map = config.slot_map()
        await check_slots(redis, keys, config.slots)  # ids name slots: the count never changes
        # Journey files become their journeys' current versions (unchanged files keep theirs).
        await publish_directory(redis, keys, config.journeys_dir, config.message_types, clock())
        await publish_segments(redis, keys, config.segments_dir, config.shards, clock())
        ingest = IngestWriter(
            redis,
            keys,
            dedupe_ttl=config.dedupe_ttl_seconds,
            max_entries=config.batch_max_entries,
            max_delay=config.batch_max_delay_ms / 1000,
        )
        app[SERVICES] = Services(
            config=config,
            slot_map=slot_map,
            redis=redis,
            keys=keys,
            ingest=ingest,
            reader=ThreadReader(redis, keys),
            api_keys=ApiKeys(config.all_api_keys),
            clock=clock,
            idempotency=IdempotencyStore(
                redis,
                keys,
                ttl=config.idempotency_ttl_seconds,
                lease=config.idempotency_lease_seconds,
                wait=config.idempotency_wait_seconds,
            ),
            rate_limiter=RateLimiter(
                redis,
                keys,
                rate=config.rate_limit_per_second,
                burst=config.rate_limit_burst,
                address_rate=config.public_rate_limit_per_second,
                address_burst=config.public_rate_limit_burst,
            ),
            trusted_proxies=[ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies],
            shard_actors=list(shard_actors or []),
        )
        yield
        await ingest.close()
        await redis.aclose()

    async def drain(app: web.Application) -> None:
        # on_shutdown runs before aiohttp waits for in-flight handlers: flush their batches now
        # instead of letting them wait out the batching delay during shutdown.
        await app[SERVICES].ingest.drain()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(drain)
    setup_console(app, config)
    return app
