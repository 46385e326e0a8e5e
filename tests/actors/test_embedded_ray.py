"""The embedded Ray that ``threadline serve`` starts: its actors run at the gateway's priority."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

# A fresh process: the suite's own Ray (tests/conftest.py) is already running in this one.
PROGRAM = textwrap.dedent(
    """
    import os, ray
    from actors.supervisor import connect_ray
    from conversations.config import Config

    connect_ray(Config(ray_namespace="{namespace}"))

    @ray.remote(num_cpus=0)
    class Probe:
        def niceness(self):
            return os.nice(0)

    print("niceness", os.nice(0), ray.get(Probe.remote().niceness.remote()))
    ray.shutdown()
    """
)


def test_shard_actors_are_not_niced_below_the_gateway() -> None:
    program = PROGRAM.format(namespace=f"tlnice-{uuid.uuid4().hex[:8]}")
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=180, check=False
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("niceness")), "")
    assert line, done.stderr[-2000:]
    _, gateway, actor = line.split()
    assert actor == gateway  # Ray's default would be 15 above it
