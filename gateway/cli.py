"""The ``threadline`` command line: parse arguments, load the config, run one subcommand.

Only light modules are imported here, so ``--help`` answers at once and a local Ray's
environment is set before anything imports Ray.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import msgspec

from actors.local_ray import DroppingLines, prepare_environment
from conversations.config import Config, ConfigError, load_config
from conversations.routing.policy import PolicyError, load_policy
from gateway import cli_help


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="threadline", description=cli_help.MAIN, epilog=cli_help.SETTINGS, formatter_class=raw
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    serve = commands.add_parser(
        "serve",
        help="run the gateway with its shard actors (and, by default, Redis and the simulator)",
        description=cli_help.SERVE,
        epilog=f"{cli_help.SETTINGS}\n\n{cli_help.SERVE_EXAMPLES}",
        formatter_class=raw,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default: %(default)s; make run: PORT=)"
    )
    serve.add_argument(
        "--config", metavar="FILE", help="TOML file; THREADLINE_* environment variables override it"
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log every request (secrets and tokens in URLs redacted)"
    )
    serve.add_argument(
        "--simulator",
        action="store_true",
        help="simulate every channel without real credentials (needed on a non-loopback --host)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes sharing the port (SO_REUSEPORT), e.g. one per core (default: %(default)s)",
    )

    agents = commands.add_parser(
        "agents",
        help="create and list console agents",
        description=cli_help.AGENTS,
        epilog=cli_help.AGENTS_EXAMPLES,
        formatter_class=raw,
    )
    agents.add_argument(
        "--config", metavar="FILE", help="TOML file; THREADLINE_* environment variables override it"
    )
    actions = agents.add_subparsers(dest="action", required=True, metavar="action")
    create = actions.add_parser(
        "create",
        help="create an agent and print its token (shown once)",
        description="Create a console agent and print its token, the one time it is shown.",
    )
    create.add_argument("name", help="lower case: letters, digits, '.', '_' and '-' (e.g. maya)")
    actions.add_parser("list", help="print every agent's name", description="Print every agent's name.")

    sim = commands.add_parser(
        "simulator", help="run the provider simulator on its own", description=cli_help.SIMULATOR
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sim.add_argument("--port", type=int, default=8081, help="port to listen on (default: %(default)s)")
    sim.add_argument("--config", metavar="FILE", help="TOML file (for the Twilio credentials and public URL)")
    sim.add_argument("--sink", action="store_true", help="benchmark mode: accept sends, post no callbacks")
    return parser


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


def _check_segments(config: Config) -> None:
    """A bad segment file stops start-up with one line naming the file and field."""
    from conversations.segments.registry import read_directory
    from conversations.segments.rules import RuleError

    try:
        read_directory(config.segments_dir)
    except RuleError as exc:
        print(f"threadline: invalid segment: {exc.field}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(args: argparse.Namespace) -> None:
    from gateway.embedded import startup_refusal
    from gateway.ports import check_ports, planned_listeners

    config = _load(args.config)
    if args.simulator:
        config = msgspec.structs.replace(config, simulator=True)
    refusal = startup_refusal(config, args.host, args.simulator)
    if refusal:
        print(f"threadline: {refusal}", file=sys.stderr)
        raise SystemExit(2)
    _check_journeys(config)
    _check_segments(config)
    problems = check_ports(planned_listeners(config, args.host, args.port))
    if problems:
        for problem in problems:
            print(f"threadline: {problem}", file=sys.stderr)
        raise SystemExit(1)
    if not config.ray_address:
        prepare_environment(os.environ)
        # The one Ray line a user of the embedded default cannot act on; see actors.local_ray.
        sys.stdout = DroppingLines(sys.stdout)
    from gateway.embedded import EmbeddedRedisError
    from gateway.serve import serve as run

    try:
        run(args, config)
    except EmbeddedRedisError as exc:
        print(f"threadline: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def simulator(args: argparse.Namespace) -> None:
    config = _load(args.config)
    from gateway.serve import simulator as run

    run(args, config)


def agents(args: argparse.Namespace) -> None:

    from gateway.agent_admin import run
    from gateway.embedded import key_prefix, running_redis_url

    config = _load(args.config)
    prefix = key_prefix(config)  # before redis_url is filled in: the embedded default's own
    redis_url = running_redis_url(config)
    if redis_url is None:
        print(
            "threadline: no Redis found: set THREADLINE_REDIS_URL, or run this while `threadline serve` runs",
            file=sys.stderr,
        )
        raise SystemExit(1)
    raise SystemExit(run(args, msgspec.structs.replace(config, redis_url=redis_url, key_prefix=prefix)))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    {"serve": serve, "simulator": simulator, "agents": agents}[args.command](args)


if __name__ == "__main__":
    main()
