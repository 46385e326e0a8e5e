"""Reading ``threadline serve``'s banner as a user does: find a heading, paste what follows."""

from __future__ import annotations

import subprocess


def commands_under(text: str, heading: str, count: int = 1) -> list[str]:
    """The ``count`` indented command lines under the line that starts with ``heading``."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(heading))
    commands = [line.strip() for line in lines[start + 1 : start + 1 + count]]
    assert all(lines[start + 1 + n].startswith("  ") for n in range(count)), commands
    return commands


def bash(script: str) -> str:
    """Run ``script`` as pasted into bash (strict mode); its stdout."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
