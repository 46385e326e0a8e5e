"""The embedded default's local Ray: its environment, and the one Ray line dropped from stdout."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from actors.local_ray import DroppingLines, prepare_environment

RAYLET_WARNING = (
    "\x1b[33m(raylet)\x1b[0m WARNING: 8 PYTHON worker processes have been started on node: e35f with "
    "address: 127.0.0.1, which is 4x the maximum expected startup concurrency (2)."
)


def test_the_worker_count_warning_is_dropped_and_everything_else_passes() -> None:
    out = io.StringIO()
    stream = DroppingLines(out)
    print("Threadline gateway ready", file=stream, flush=True)
    print(RAYLET_WARNING, file=stream)
    stream.write("partial ")
    assert out.getvalue() == "Threadline gateway ready\n"  # a line is judged once it is whole
    stream.write("line\n(raylet) something a user needs\n")
    assert out.getvalue().splitlines() == [
        "Threadline gateway ready",
        "partial line",
        "(raylet) something a user needs",
    ]


def test_the_environment_is_set_before_ray_and_keeps_what_the_user_set() -> None:
    script = (
        "import os, sys; from actors.local_ray import prepare_environment; "
        "env = {'RAY_AUTH_MODE': 'disabled'}; prepare_environment(env); print(sorted(env.items()))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(
        sorted({"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}.items())
    )
    assert "ray" in sys.modules  # this session imported Ray: too late to prepare it
    with pytest.raises(RuntimeError, match="before ray is imported"):
        prepare_environment({})


def test_the_license_is_an_spdx_string() -> None:
    # A TOML table makes setuptools (>= 77) warn on every install.
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
