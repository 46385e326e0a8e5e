"""The words of ``threadline --help`` and of each subcommand's help."""

from __future__ import annotations

MAIN = """\
Threadline: an omnichannel conversation gateway. One customer, one thread, every channel.

  threadline serve                     the gateway, its shard actors (local Ray), the provider
                                       simulator and, when none answers, a Redis of its own
  threadline agents create maya        a console agent and its token
  threadline simulator                 the provider simulator on its own

Run `threadline <command> --help` for a command's options and settings."""

SETTINGS = """\
settings (environment variables override the --config TOML file; all: README "Configuration"):
  THREADLINE_REDIS_URL             Redis to use; unset: the embedded default (serve --help)
  THREADLINE_REDIS_PROBE           where the embedded default looks for a Redis (127.0.0.1:6379)
  THREADLINE_KEY_PREFIX            prefix of every Redis key; unset: tl, or the data dir's own
  THREADLINE_DATA_DIR              data dir (.threadline): dev API key, secrets, a child Redis's AOF
  THREADLINE_API_KEYS              comma-separated API keys; unset: DATA_DIR/dev-api-key
  THREADLINE_PUBLIC_URL            the URL providers call (http://127.0.0.1:PORT)
  THREADLINE_SIMULATOR_PORT        the provider simulator's port (8081)
  THREADLINE_SIMULATOR_SMTP_PORT   the simulator's SMTP sink (8025)
  THREADLINE_RAY_ADDRESS           a Ray cluster to join; unset: a local Ray on loopback
  THREADLINE_SHARDS                customer shards, one actor each (16)"""

SERVE = """\
Start the gateway on --host:--port with one Ray actor per customer shard, and print a banner
with a console sign-in link and commands to try.

The embedded default (no THREADLINE_REDIS_URL, no THREADLINE_API_KEYS) needs no accounts: it
uses the Redis at THREADLINE_REDIS_PROBE if one answers, else starts redis-server with its AOF
in DATA_DIR/redis; keeps its own key prefix and a dev API key in the data dir
(DATA_DIR/dev-api-key); runs the provider simulator unless provider credentials are set; and
creates a console agent "dev" with a one-time sign-in link. Every port is checked first."""

SERVE_EXAMPLES = """\
examples:
  threadline serve                                   everything local, on 127.0.0.1:8080
  PORT=9090 make run                                 the same through make, on another port
  THREADLINE_SIMULATOR_PORT=9091 threadline serve    move the simulator
  THREADLINE_REDIS_URL=redis://db:6379/0 THREADLINE_API_KEYS=k1 threadline serve --host 0.0.0.0
  threadline serve --config threadline.toml --workers 2"""

AGENTS = """\
Create and list console agents, in the Redis and key prefix the gateways use (the same
settings as serve: THREADLINE_REDIS_URL, THREADLINE_KEY_PREFIX, --config). Needs no running
gateway. Over HTTP, an API key with the admin scope does the same: POST /v1/agents."""

AGENTS_EXAMPLES = """\
examples:
  threadline agents create maya       prints maya's token once (only its SHA-256 is stored)
  threadline agents list"""

SIMULATOR = """\
Run the provider simulator alone: Twilio SMS and Voice, Meta WhatsApp, Google RBM and an SMTP
sink, speaking the providers' wire formats to the gateway at THREADLINE_PUBLIC_URL. serve
starts one itself; this is for benchmarks and for a gateway elsewhere."""
