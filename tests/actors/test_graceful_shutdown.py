"""Shutdown drains: requests in flight when the gateway stops are answered and their entries stored."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import msgspec
from aiohttp import web
from redis.asyncio import Redis

from channels.twilio_signature import compute_signature
from conversations.store import Keys
from gateway.app import create_app
from gateway.embedded import free_port
from gateway.services import SERVICES
from tests.conftest import delete_prefix
from tests.support.stack import eventually, make_config, twilio_inbound_form, unique_phone

IN_FLIGHT = 20


async def test_stopping_the_gateway_flushes_batches_in_flight(redis_url: str) -> None:
    port = free_port()
    prefix = f"tltest-drain-{uuid.uuid4().hex[:8]}"
    # A batching delay far longer than the test: only the shutdown drain can flush these batches.
    config = msgspec.structs.replace(
        make_config(redis_url, port, free_port(), prefix), batch_max_delay_ms=60_000
    )
    app = create_app(config, shard_actors=[])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = config.public_url + "/webhooks/twilio/sms"
    forms = [twilio_inbound_form(unique_phone(), f"in flight {i}") for i in range(IN_FLIGHT)]
    try:
        async with aiohttp.ClientSession() as http:

            async def post(form: dict[str, str]) -> int:
                signature = compute_signature(config.twilio.auth_token, url, form.items())
                async with http.post(url, data=form, headers={"X-Twilio-Signature": signature}) as response:
                    return response.status

            posts = [asyncio.create_task(post(form)) for form in forms]
            writer = app[SERVICES].ingest
            await eventually(lambda: _true(writer.queued == IN_FLIGHT), timeout=30)
            assert not any(task.done() for task in posts)  # all waiting on their batch

            started = time.monotonic()
            await runner.cleanup()  # what `threadline serve` does on SIGTERM
            assert time.monotonic() - started < 20
            assert await asyncio.gather(*posts) == [200] * IN_FLIGHT
        redis = Redis.from_url(redis_url)
        try:
            keys = Keys(prefix)
            stored = sum([await redis.xlen(keys.ingest(shard)) for shard in range(config.shards)])
        finally:
            await redis.aclose()
        assert stored == IN_FLIGHT
    finally:
        await runner.cleanup()
        await delete_prefix(redis_url, prefix)


async def _true(value: bool) -> bool:
    return value
