"""The ``threadline`` command: ``serve`` (gateway + shards + simulator) and ``simulator``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import shlex
import signal
import sys
from urllib.parse import quote

from aiohttp import web

from channels.simulator.app import SimulatorSettings, create_simulator_app
from channels.simulator.whatsapp import WhatsAppSimulatorSettings
from channels.twilio_signature import compute_signature
from conversations.access import first_plain_key
from conversations.config import Config, ConfigError, load_config
from conversations.routing.policy import PolicyError, load_policy
from gateway.app import create_app

log = logging.getLogger("threadline")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threadline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway with its shard actors")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--config", help="TOML file; THREADLINE_* environment variables override it")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes sharing the port (SO_REUSEPORT); e.g. one per core",
    )
    sim = commands.add_parser("simulator", help="run the provider simulator on its own")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8081)
    sim.add_argument("--config", help="TOML file (for the Twilio credentials and public URL)")
    sim.add_argument("--sink", action="store_true", help="benchmark mode: accept sends, post no callbacks")
    return parser


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def _load(path: str | None) -> Config:
    try:
        config = load_config(path)
        load_policy(config.routing_policy or None)  # fail here, in one line, not in every shard actor
        return config
    except (ConfigError, PolicyError) as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _check_journeys(config: Config) -> None:
    """A bad journey file stops start-up with one line naming the file, step and field."""
    from conversations.journeys.definition import DefinitionError
    from conversations.journeys.registry import read_directory

    try:
        read_directory(config.journeys_dir, config.message_types)
    except DefinitionError as exc:
        print(f"threadline: invalid journey: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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


def banner(config: Config, host: str, port: int) -> str:
    """What ``serve`` prints once ready: where it listens and curls to try it."""
    url = f"http://{host}:{port}"
    lines = [
        f"Threadline gateway ready on {url}  (Redis {config.redis_url}, {config.shards} shards over {config.slots} slots)"
    ]
    key = first_plain_key(config.api_keys) or "<api key>"
    phone = "+15550100000"
    if config.uses_simulator:
        sim = f"http://127.0.0.1:{config.simulator_port}"
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": config.twilio.account_sid,
            "From": phone,
            "To": config.twilio.from_number,
            "Body": "Hello from the README",
            "NumMedia": "0",
        }
        webhook = config.public_url + "/webhooks/twilio/sms"
        signature = compute_signature(config.twilio.auth_token, webhook, params.items())
        data = " ".join(f"--data-urlencode {shlex.quote(k + '=' + v)}" for k, v in params.items())
        lines += [
            f"Provider simulator on {sim}",
            "",
            "Send a signed test SMS (as Twilio would):",
            f"  curl -s {webhook} -H 'X-Twilio-Signature: {signature}' {data}",
            "Or let a simulated customer text you:",
            f"  curl -s {sim}/simulator/inbound -H 'Content-Type: application/json' "
            f'-d \'{{"from": "{phone}", "body": "Hi there"}}\'',
            "Or on WhatsApp (Meta Cloud API format, signed):",
            f"  curl -s {sim}/simulator/whatsapp/inbound -H 'Content-Type: application/json' "
            f'-d \'{{"from": "{phone}", "body": "Hi on WhatsApp"}}\'',
        ]
    lines += [
        "Find the customer and read the thread:",
        f"  curl -s -H 'Authorization: Bearer {key}' '{url}/v1/customers?phone={quote(phone)}'",
        f"  curl -s -H 'Authorization: Bearer {key}' {url}/v1/customers/<id>/thread",
        'Reply to them (on SMS; leave out "channel" and routing picks it: WhatsApp first for service):',
        f"  curl -s -H 'Authorization: Bearer {key}' {url}/v1/messages "
        f'-d \'{{"to": {{"phone": "{phone}"}}, "channel": "sms", "body": "Thanks!"}}\'',
    ]
    return "\n".join(lines)


async def _serve(args: argparse.Namespace, config: Config, actors: list) -> None:
    from actors.supervisor import wait_until_ready

    await wait_until_ready(actors)
    runners: list[web.AppRunner] = []
    access_log = logging.getLogger("aiohttp.access") if args.access_log else None
    if config.uses_simulator:
        sim_runner = web.AppRunner(create_simulator_app(simulator_settings(config)), access_log=None)
        await sim_runner.setup()
        await web.TCPSite(sim_runner, "127.0.0.1", config.simulator_port).start()
        runners.append(sim_runner)
    runner = web.AppRunner(create_app(config, actors), access_log=access_log)
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
    print(banner(config, args.host, args.port), flush=True)
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
    await asyncio.gather(*(actor.shutdown.remote() for actor in actors), return_exceptions=True)


def serve(args: argparse.Namespace) -> None:
    from actors.supervisor import connect_ray, start_shard_actors
    from gateway.embedded import resolve_embedded
    from gateway.routes.webhooks import status_callbacks

    config = _load(args.config)
    _check_journeys(config)
    config, redis_child = resolve_embedded(config, args.port)
    try:
        connect_ray(config)
        actors = start_shard_actors(config, status_callbacks(config.public_url))
        _use_uvloop()
        asyncio.run(_serve(args, config, actors))
    finally:
        if redis_child is not None:
            redis_child.terminate()
            redis_child.wait(10)


def simulator(args: argparse.Namespace) -> None:
    from gateway.embedded import resolve_embedded

    config = _load(args.config)
    config, _ = resolve_embedded(msgspec_replace(config, redis_url="unused"), 8080)
    _use_uvloop()
    print(f"Provider simulator on http://{args.host}:{args.port} → gateway {config.public_url}")
    web.run_app(
        create_simulator_app(simulator_settings(config, sink=args.sink)),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
    )


def msgspec_replace(config: Config, **changes: object) -> Config:
    import msgspec

    return msgspec.structs.replace(config, **changes)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    {"serve": serve, "simulator": simulator}[args.command](args)


if __name__ == "__main__":
    main()
