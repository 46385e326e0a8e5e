"""Reading provider payload fixtures (tests/fixtures/<channel>/<event>.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_bytes(channel: str, name: str) -> bytes:
    """The fixture file's exact bytes."""
    return (FIXTURES / channel / f"{name}.json").read_bytes()


def fixture(channel: str, name: str) -> Any:
    """The fixture as JSON data."""
    return json.loads(fixture_bytes(channel, name))
