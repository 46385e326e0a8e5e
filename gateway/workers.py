"""Extra gateway processes for ``threadline serve --workers N``, sharing the port via SO_REUSEPORT.

The first process (the one the user started) starts Ray and the shard actors, as before. Each
extra worker is a fresh (spawned, not forked: Ray's threads do not survive a fork) process
that joins that Ray as a driver and looks the actors up by name, so every gateway process
answers /readyz the same way and any of them could be moved to another machine unchanged.
Their request path never calls Ray: entries reach the shards through Redis streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from multiprocessing.process import BaseProcess

import msgspec
from aiohttp import web

from conversations.config import Config
from gateway.access_log import gateway_runner
from gateway.app import create_app

log = logging.getLogger("threadline.worker")


def start_workers(
    count: int, config: Config, ray_address: str, host: str, port: int, access_log: bool
) -> list[BaseProcess]:
    """Spawn ``count`` gateway processes bound to ``host:port`` alongside this one."""
    context = multiprocessing.get_context("spawn")
    config_json = msgspec.json.encode(config)
    workers: list[BaseProcess] = []
    for index in range(count):
        worker = context.Process(
            target=_worker_main,
            args=(config_json, ray_address, host, port, access_log),
            name=f"threadline-gateway-{index + 1}",
            daemon=False,
        )
        worker.start()
        workers.append(worker)
    return workers


def stop_workers(workers: list[BaseProcess], timeout: float = 30.0) -> None:
    """SIGTERM each worker (it stops accepting and flushes its batches), then wait."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(timeout)
        if worker.is_alive():
            worker.kill()
            worker.join(5)


def _worker_main(config_json: bytes, ray_address: str, host: str, port: int, access_log: bool) -> None:
    import ray

    from actors.supervisor import find_shard_actors

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = msgspec.json.decode(config_json, type=Config)
    ray.init(address=ray_address, namespace=config.ray_namespace, log_to_driver=False)
    actors = find_shard_actors(config)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_serve_worker(config, actors, host, port, access_log))


async def _serve_worker(config: Config, actors: list, host: str, port: int, access_log: bool) -> None:
    runner = gateway_runner(create_app(config, actors), access_log)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=True).start()
    log.info("gateway worker listening on %s:%s", host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()  # stops accepting, then flushes the batches it holds
