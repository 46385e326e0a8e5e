"""A segment definition: a name, an optional description and a rule, from JSON or YAML."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import yaml

from conversations.segments.rules import Rule, RuleError, parse_rule

NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


class Segment(msgspec.Struct, frozen=True):
    """A parsed definition."""

    name: str
    rule: Rule
    description: str = ""


def load_source(text: str, fmt: str) -> dict[str, Any]:
    """Parse a definition's text (``yaml`` also reads JSON) into plain JSON data."""
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise RuleError("", f"not valid {fmt.upper()}: {exc}", f"invalid_{fmt}") from exc
    if not isinstance(data, dict):
        raise RuleError("", "a segment is a mapping with name and rule")
    return msgspec.json.decode(msgspec.json.encode(data))


def parse_segment(raw: dict[str, Any]) -> Segment:
    """Validate plain data as a segment; RuleError names the field."""
    for key in raw:
        if key not in ("name", "rule", "description"):
            raise RuleError(key, f"unknown field {key!r}; a segment has name, rule and description")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise RuleError(
            "name", "a segment name is 1-64 characters of a-z 0-9 _ -, starting with a letter or digit"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise RuleError("description", "description is text")
    if "rule" not in raw:
        raise RuleError("rule", "a segment needs a rule")
    return Segment(name, parse_rule(raw["rule"]), description)
