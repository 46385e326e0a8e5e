"""A port that is taken stops ``threadline serve`` at once, in one line naming the setting to change."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.embedded import free_port


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _serve(tmp_path: Path, port: int, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    settings = {
        **os.environ,
        "THREADLINE_DATA_DIR": str(tmp_path / "data"),
        "THREADLINE_REDIS_PROBE": f"127.0.0.1:{free_port()}",  # nothing there: it would start Redis
        "THREADLINE_SIMULATOR_PORT": str(free_port()),
        "THREADLINE_SIMULATOR_SMTP_PORT": str(free_port()),
        **env,
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        env=settings,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - started


def test_a_taken_gateway_port_is_one_line_before_anything_starts(tmp_path: Path, held_port: int) -> None:
    done, took = _serve(tmp_path, held_port)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"threadline: port {held_port} on 127.0.0.1 for the gateway is taken; "
        "choose another with --port (PORT=... with make run)"
    ]
    assert not (tmp_path / "data" / "redis").exists()  # no Redis (nor Ray) was started
    assert took < 15, took


def test_a_taken_simulator_port_names_its_setting(tmp_path: Path, held_port: int) -> None:
    done, _ = _serve(
        tmp_path,
        free_port(),
        THREADLINE_SIMULATOR_PORT=str(held_port),
        THREADLINE_SIMULATOR_SMTP_PORT=str(held_port),
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert "THREADLINE_SIMULATOR_PORT" in lines[0] and "THREADLINE_SIMULATOR_SMTP_PORT" in lines[1]
