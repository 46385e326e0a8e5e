"""Liveness and readiness probes."""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from actors.supervisor import unready_shards
from gateway.endpoints import JSON, Endpoint, Endpoints
from gateway.services import SERVICES, Services

READINESS_CACHE_SECONDS = 1.0

routes = Endpoints()


class Health(msgspec.Struct):
    """Liveness answer."""

    status: str


class Readiness(msgspec.Struct, omit_defaults=True):
    status: str
    redis: str
    shards: int
    unready_shards: list[int] = msgspec.field(default_factory=list)
    # Why each unready shard is not ready, e.g. "LoopsNotRunning: outbox-3 loop backing_off …".
    reasons: dict[int, str] = msgspec.field(default_factory=dict)
    # Channels the built-in simulator stands in for: nothing sent on them leaves the machine.
    simulated_channels: list[str] = msgspec.field(default_factory=list)
    checked_at: float = 0.0  # when this answer was probed (answers are reused for a second)


@routes.documented(
    Endpoint(
        "GET", "/healthz", "healthz", "Liveness: the process is up", "operations", {200: ("Up", Health, JSON)}
    )
)
async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return web.Response(body=msgspec.json.encode(Health("ok")), content_type=JSON)


@routes.documented(
    Endpoint(
        "GET",
        "/readyz",
        "readyz",
        "Readiness: Redis and every shard actor answer",
        "operations",
        {200: ("Ready", Readiness, JSON), 503: ("Not ready", Readiness, JSON)},
    )
)
async def readyz(request: web.Request) -> web.Response:
    """Redis answers and every shard actor answers with all its loops running.

    The answer is reused for a second: the probe is unauthenticated and pings every shard actor,
    so a flood of probes must not become a flood of actor calls.
    """
    services = request.app[SERVICES]
    cache = services.readiness
    async with cache.lock:  # one probe at a time; the others wait for its answer
        if cache.answer is None or time.monotonic() - cache.at >= READINESS_CACHE_SECONDS:
            cache.answer = await _probe(services)
            cache.at = time.monotonic()
        answer = cache.answer
    return web.Response(
        status=200 if answer.status == "ready" else 503,
        body=msgspec.json.encode(answer),
        content_type="application/json",
    )


async def _probe(services: Services) -> Readiness:
    try:
        await services.redis.ping()
        redis_state = "ok"
    except Exception as exc:
        redis_state = f"unreachable: {type(exc).__name__}"
    actors = services.shard_actors
    if actors:
        reasons = await unready_shards(actors)
    else:
        reasons = dict.fromkeys(range(services.config.shards), "no shard actors")
    ready = redis_state == "ok" and not reasons
    return Readiness(
        "ready" if ready else "not_ready",
        redis_state,
        len(actors),
        sorted(reasons),
        reasons,
        [str(channel) for channel in services.config.simulated_channels],
        checked_at=services.clock(),
    )
