"""``threadline serve`` and ``threadline simulator``: start the stack, print the banner, run.

Imports Ray (through the app and the supervisor): the caller prepares a local Ray's
environment first (``actors.local_ray``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

import msgspec
from aiohttp import web

from actors.supervisor import connect_ray, start_shard_actors, wait_until_ready
from channels.simulator.app import create_simulator_app
from channels.simulator.settings import SimulatorSettings
from channels.simulator.whatsapp import WhatsAppSimulatorSettings
from conversations.config import Config
from gateway.access_log import gateway_runner
from gateway.agent_admin import sign_in_link
from gateway.app import create_app
from gateway.banner import banner
from gateway.embedded import dev_api_key_file, resolve_embedded
from gateway.routes.webhooks import status_callbacks

log = logging.getLogger("threadline")

ACTOR_STOP_SECONDS = 10.0  # sends in flight get this long to finish when serve is stopped


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def simulator_settings(config: Config, sink: bool = False) -> SimulatorSettings:
    return SimulatorSettings(
        account_sid=config.twilio.account_sid,
        auth_token=config.twilio.auth_token,
        gateway_url=config.public_url,
        rbm_client_token=config.rbm.client_token,
        rbm_access_token=config.rbm.access_token,
        rbm_agent_id=config.rbm.agent_id,
        whatsapp=WhatsAppSimulatorSettings(
            access_token=config.whatsapp.access_token,
            app_secret=config.whatsapp.app_secret,
            phone_number_id=config.whatsapp.phone_number_id,
        ),
        smtp_port=config.simulator_smtp_port,
        email_inbound_secret=config.email.inbound_secret,
        sink=sink,
    )


async def _serve(args: argparse.Namespace, config: Config, actors: list, dev: bool) -> None:
    await wait_until_ready(actors)
    runners: list[web.AppRunner] = []
    if config.uses_simulator:
        sim_runner = web.AppRunner(create_simulator_app(simulator_settings(config)), access_log=None)
        await sim_runner.setup()
        await web.TCPSite(sim_runner, "127.0.0.1", config.simulator_port).start()
        runners.append(sim_runner)
    runner = gateway_runner(create_app(config, actors), args.access_log)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, reuse_port=args.workers > 1).start()
    runners.insert(0, runner)
    workers = []
    if args.workers > 1:
        import ray

        from gateway.workers import start_workers

        workers = start_workers(
            args.workers - 1,
            config,
            ray.get_runtime_context().gcs_address,
            args.host,
            args.port,
            args.access_log,
        )
    # The embedded default signs its user in: a dev agent and a one-time link (never logged).
    link = await sign_in_link(config, f"http://{args.host}:{args.port}") if dev else ""
    key_file = dev_api_key_file(config) if dev else None
    print(banner(config, args.host, args.port, sign_in=link, dev_key_file=key_file), flush=True)
    if workers:
        print(f"{args.workers} gateway processes share port {args.port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining batches")
    if workers:
        from gateway.workers import stop_workers

        await asyncio.to_thread(stop_workers, workers)
    for runner_ in runners:  # gateway first: it stops accepting, then flushes its batches
        await runner_.cleanup()
    stopping = asyncio.gather(*(actor.shutdown.remote() for actor in actors), return_exceptions=True)
    try:
        await asyncio.wait_for(stopping, ACTOR_STOP_SECONDS)
    except TimeoutError:
        # The batches are flushed by now; a local Ray ends its actors with this process anyway.
        log.warning("shard actors did not stop within %ss; leaving them to Ray", ACTOR_STOP_SECONDS)


def serve(args: argparse.Namespace, config: Config) -> None:
    """Resolve the embedded defaults, start Ray and the shard actors, serve until a signal."""
    dev = not config.api_keys  # the embedded default: a dev key in the data dir, a dev agent
    config, redis_child = resolve_embedded(config, args.port)
    try:
        connect_ray(config)
        actors = start_shard_actors(config, status_callbacks(config.public_url))
        _use_uvloop()
        asyncio.run(_serve(args, config, actors, dev))
    finally:
        if redis_child is not None:
            redis_child.terminate()
            redis_child.wait(10)


def simulator(args: argparse.Namespace, config: Config) -> None:
    """The provider simulator on its own (no gateway, no Redis)."""
    config, _ = resolve_embedded(msgspec.structs.replace(config, redis_url="unused"), 8080)
    _use_uvloop()
    print(f"Provider simulator on http://{args.host}:{args.port} → gateway {config.public_url}")
    web.run_app(
        create_simulator_app(simulator_settings(config, sink=args.sink)),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
    )
