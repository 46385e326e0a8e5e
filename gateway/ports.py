"""Every port ``serve`` will listen on, checked before anything starts (Redis, Ray, actors).

A port that is taken stops start-up at once with one line naming the setting that moves it,
instead of a traceback after Ray's start-up.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from conversations.config import Config

_IN_USE = {errno.EADDRINUSE}


@dataclass(frozen=True, slots=True)
class Listener:
    """One address ``serve`` binds, and how a user moves it elsewhere."""

    host: str
    port: int
    what: str
    setting: str


def planned_listeners(config: Config, host: str, port: int) -> list[Listener]:
    """The gateway's address, and the simulator's HTTP and SMTP ones when it runs."""
    listeners = [Listener(host, port, "the gateway", "--port (PORT=... with make run)")]
    if config.uses_simulator:
        listeners.append(
            Listener(
                "127.0.0.1", config.simulator_port, "the provider simulator", "THREADLINE_SIMULATOR_PORT"
            )
        )
        if not config.email.smtp_url:
            listeners.append(
                Listener(
                    "127.0.0.1",
                    config.simulator_smtp_port,
                    "the simulator's SMTP sink",
                    "THREADLINE_SIMULATOR_SMTP_PORT",
                )
            )
    return listeners


def unavailable(listener: Listener) -> str | None:
    """Why ``listener`` cannot bind (one line naming the setting), or None when it can."""
    with socket.socket(socket.AF_INET6 if ":" in listener.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind((listener.host, listener.port))
        except OSError as exc:
            reason = "is taken" if exc.errno in _IN_USE else f"cannot be used ({exc.strerror})"
            return (
                f"port {listener.port} on {listener.host} for {listener.what} {reason}; "
                f"choose another with {listener.setting}"
            )
    return None


def check_ports(listeners: list[Listener]) -> list[str]:
    """One line per listener that cannot bind; empty when every one can."""
    return [problem for listener in listeners if (problem := unavailable(listener))]
