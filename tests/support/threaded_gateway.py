"""A gateway (no shard actors) on its own event loop in a thread, for synchronous clients
such as schemathesis, which would block the test session's loop if it served the stack."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import msgspec
from aiohttp import web

from conversations.config import Config
from gateway.app import create_app
from gateway.embedded import free_port
from tests.support.stack import make_config


@contextlib.contextmanager
def threaded_gateway(redis_url: str, prefix: str, **changes: object) -> Iterator[tuple[str, Config]]:
    """Serve ``create_app(config, shard_actors=[])`` on a free port; yields (base URL, config)."""
    port = free_port()
    config = msgspec.structs.replace(make_config(redis_url, port, free_port(), prefix), **changes)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(config, shard_actors=[]), access_log=None)
    ready = threading.Event()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="threaded-gateway", daemon=True)
    thread.start()
    assert ready.wait(30), "gateway thread did not start"
    try:
        yield f"http://127.0.0.1:{port}", config
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
