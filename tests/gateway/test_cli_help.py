"""``threadline --help`` and each subcommand's: real words, defaults, settings and examples."""

from __future__ import annotations

import subprocess
import sys


def _help(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv, "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_main_help_names_the_commands_and_the_settings() -> None:
    text = _help()
    assert "``" not in text  # no raw docstring
    for word in (
        "serve",
        "agents",
        "simulator",
        "THREADLINE_REDIS_URL",
        "THREADLINE_DATA_DIR",
        "dev-api-key",
    ):
        assert word in text, word


def test_each_subcommand_has_its_options_with_defaults_and_examples() -> None:
    serve = _help("serve")
    assert "(default: 127.0.0.1)" in serve and "(default: 8080" in serve and "PORT=" in serve
    assert "examples:" in serve and "THREADLINE_SIMULATOR_PORT" in serve and "sign-in link" in serve
    agents = _help("agents")
    assert "threadline agents create maya" in agents and "admin scope" in agents
    assert "token" in _help("agents", "create") and "(default: 8081)" in _help("simulator")


def test_help_needs_no_ray() -> None:
    script = "import sys, gateway.cli; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False"  # so Ray's environment can still be prepared, and help is quick
