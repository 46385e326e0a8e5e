"""Session fixtures: one Ray, one Redis prefix, one running stack for the whole run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import ray
from aiohttp import web
from redis.asyncio import Redis

from actors.supervisor import start_shard_actors, wait_until_ready
from channels.simulator.app import create_simulator_app
from channels.simulator.settings import SimulatorSettings
from channels.simulator.whatsapp import WhatsAppSimulatorSettings
from conversations.store import Keys
from gateway.app import create_app
from gateway.embedded import free_port
from gateway.routes.webhooks import status_callbacks
from tests.support.redis_server import test_redis_url
from tests.support.stack import Stack, make_config

RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with test_redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def key_prefix() -> str:
    """Each test run owns the keys under its own prefix; nothing else in Redis is touched."""
    return f"tltest-{RUN_ID}"


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        namespace=f"tltest-{RUN_ID}",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
async def stack(redis_url: str, key_prefix: str, ray_session: None) -> AsyncIterator[Stack]:
    gateway_port, simulator_port, smtp_port = free_port(), free_port(), free_port()
    config = make_config(redis_url, gateway_port, simulator_port, key_prefix, smtp_port)
    actors = start_shard_actors(config, status_callbacks(config.public_url))
    await wait_until_ready(actors)
    runners = []
    whatsapp = WhatsAppSimulatorSettings(
        config.whatsapp.access_token, config.whatsapp.app_secret, config.whatsapp.phone_number_id
    )
    simulator = create_simulator_app(
        SimulatorSettings(
            config.twilio.account_sid,
            config.twilio.auth_token,
            config.public_url,
            whatsapp=whatsapp,
            smtp_port=config.simulator_smtp_port,
            email_inbound_secret=config.email.inbound_secret,
        )
    )
    for app, port in ((simulator, simulator_port), (create_app(config, actors), gateway_port)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    async with aiohttp.ClientSession() as http:
        yield Stack(
            config=config,
            http=http,
            gateway_url=f"http://127.0.0.1:{gateway_port}",
            simulator_url=f"http://127.0.0.1:{simulator_port}",
            actors=actors,
            runners=runners,
        )
    for runner in reversed(runners):
        await runner.cleanup()
    for actor in actors:
        ray.kill(actor, no_restart=True)
    await delete_prefix(redis_url, key_prefix)


async def delete_prefix(redis_url: str, prefix: str) -> None:
    """Remove this run's keys (never FLUSHALL: the Redis may hold other data)."""
    redis = Redis.from_url(redis_url)
    try:
        batch = []
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await redis.unlink(*batch)
                batch.clear()
        if batch:
            await redis.unlink(*batch)
    finally:
        await redis.aclose()


@pytest.fixture
async def env(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Redis, Keys]]:
    """A Redis client and a fresh key space under this run's prefix, unlinked afterwards (for
    tests that drive a shard's batch processor directly, without Ray)."""
    keys = Keys(f"{key_prefix}:unit-{uuid.uuid4().hex[:6]}")
    redis = Redis.from_url(redis_url)
    yield redis, keys
    async for key in redis.scan_iter(match=keys.pattern()):
        await redis.unlink(key)
    await redis.aclose()
