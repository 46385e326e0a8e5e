"""Reading provider payload fixtures (tests/fixtures/<channel>/<event>.json or .form)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from multidict import MultiDict

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_bytes(channel: str, name: str, suffix: str = ".json") -> bytes:
    """The fixture file's exact bytes."""
    return (FIXTURES / channel / f"{name}{suffix}").read_bytes()


def fixture(channel: str, name: str) -> Any:
    """The fixture as JSON data."""
    return json.loads(fixture_bytes(channel, name))


def fixture_form(channel: str, name: str) -> MultiDict[str]:
    """A form-body fixture (``<name>.form``, URL-encoded as posted) as its parameters, in order."""
    body = fixture_bytes(channel, name, ".form").decode("ascii")
    return MultiDict(parse_qsl(body, keep_blank_values=True, strict_parsing=True))
