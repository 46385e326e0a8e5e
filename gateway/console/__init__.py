"""The agent console: WebSocket protocol, per-gateway update fan-out, and the page's runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
from aiohttp import web

from channels.registry import enabled_channels
from conversations.agents import AgentDirectory
from conversations.config import Config
from conversations.console import ConsoleStore
from gateway.console.commands import ConsoleCommands
from gateway.console.hub import ConsoleHub
from gateway.services import SERVICES

GATEWAY_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = GATEWAY_DIR / "static"
TEMPLATES_DIR = GATEWAY_DIR / "templates"


@dataclass(slots=True)
class Console:
    """The console's share of a gateway process."""

    commands: ConsoleCommands
    agents: AgentDirectory
    hub: ConsoleHub
    socket_queue: int
    templates: jinja2.Environment


CONSOLE = web.AppKey("console", Console)


def setup_console(app: web.Application, config: Config) -> None:
    """Mount the console on ``app``: its runtime starts after (and stops before) the shared services."""
    app.router.add_static("/console/static/", STATIC_DIR, name="console_static")

    async def runtime(app: web.Application) -> AsyncIterator[None]:
        services = app[SERVICES]
        store = ConsoleStore(services.redis, services.keys, config.console_events_maxlen, services.clock)
        agents = AgentDirectory(services.redis, services.keys, config.agents, services.clock)
        hub = ConsoleHub(services.redis, services.keys, store, agents)
        commands = ConsoleCommands(
            store=store,
            agents=agents,
            hub=hub,
            reader=services.reader,
            ingest=services.ingest,
            slot_map=services.slot_map,
            channels=enabled_channels(config),
            clock=services.clock,
        )
        templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=jinja2.select_autoescape(["html", "j2"]),
        )
        app[CONSOLE] = Console(commands, agents, hub, config.console_socket_queue, templates)
        await hub.start()
        yield
        await hub.stop()

    async def close_sockets(app: web.Application) -> None:
        # Runs before the server waits for handlers: open sockets would otherwise hold it up.
        if CONSOLE in app:
            await app[CONSOLE].hub.stop()

    app.cleanup_ctx.append(runtime)
    app.on_shutdown.append(close_sockets)
