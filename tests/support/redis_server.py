"""A Redis for the tests: the one on 127.0.0.1:6379 if it answers, else one we start."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gateway.embedded import free_port, port_open
from tests.support.wait import eventually_sync


@contextlib.contextmanager
def own_redis_server(
    appendonly: bool = True, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """Start a private redis-server (AOF on) on a free port; yields (url, process, data dir)."""
    port = port or free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="tl-redis-"))
    process = spawn_redis_server(port, data_dir, appendonly)
    try:
        yield f"redis://127.0.0.1:{port}/0", process, data_dir
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)


def spawn_redis_server(port: int, data_dir: Path, appendonly: bool = True) -> subprocess.Popen:
    """Start redis-server on ``port`` over ``data_dir`` (again, after a stop: AOF reloads it)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed for the tests (apt-get install redis-server)"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir), "--save", ""]
    args += ["--appendonly", "yes" if appendonly else "no", "--appendfsync", "always"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        assert process.poll() is None, "redis-server exited before it listened"
        return port_open("127.0.0.1", port)

    eventually_sync(listening, 10, 0.05, what=f"redis-server to listen on {port}")
    return process


@contextlib.contextmanager
def test_redis_url() -> Iterator[str]:
    """The shared local Redis when one listens (CI starts one), else a private one."""
    if port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    with own_redis_server() as (url, _process, _dir):
        yield url
