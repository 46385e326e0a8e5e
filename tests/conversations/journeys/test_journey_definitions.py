"""Journey files: validation errors name the step and field; versions are kept in Redis."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from conversations.journeys.definition import DefinitionError, parse_definition
from conversations.journeys.durations import parse_duration
from conversations.journeys.registry import (
    current_versions,
    publish,
    publish_directory,
    read_directory,
    stored_version,
)
from conversations.store import Keys
from tests.journeys_support import EXAMPLES, example_source

BASE: dict[str, Any] = {
    "name": "winback",
    "trigger": {"event": "cart_abandoned"},
    "steps": [
        {"id": "remind", "type": "send", "channel": "sms", "body": "Come back {{ customer.name }}"},
        {"id": "nudge", "type": "send", "body": "Still there?"},
        {"id": "wait_for_purchase", "type": "wait", "event": "purchase_completed", "timeout": "4h"},
    ],
}


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    target = raw
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return raw


def _error(raw: dict[str, Any]) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(raw)
    return caught.value


def test_every_built_in_example_is_valid() -> None:
    found = read_directory(EXAMPLES, ["transactional", "service", "marketing", "rich_media", "urgent"])
    assert sorted(d.name for d, _ in found) == [
        "cart_abandonment",
        "otp",
        "purchase_completed",
        "re_engagement",
        "subscription_renewal",
        "support_ticket",
    ]


def test_a_bad_duration_is_named_by_step_index_id_and_field() -> None:
    error = _error(_with(["steps", 2, "timeout"], "soonish"))
    assert str(error) == "steps[2] (wait_for_purchase).timeout: expected duration like 30s, 4h or 14d"
    assert error.field == "steps[2].timeout"


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["steps", 1, "type"], "teleport", "steps[1] (nudge).type: invalid value 'teleport'"),
        (["steps", 1, "body"], 7, "steps[1] (nudge).body: expected `str`, got `int`"),
        (["steps", 0, "channel"], "pigeon", "steps[0] (remind).channel: channel is one of"),
        (["steps", 0, "message_type"], "spam", "steps[0] (remind).message_type: message types are"),
        (["steps", 0, "body"], "Hi {{ customer.name ", "steps[0] (remind).body: template error"),
        (["steps", 0, "next"], "nowhere", "steps[0] (remind).next: no step with id 'nowhere'"),
        (["steps", 1, "id"], "remind", "steps[1] (remind).id: duplicate step id (also steps[0])"),
        (["steps", 2, "duration"], "1h", "steps[2] (wait_for_purchase): a wait has exactly one of"),
        (["steps", 2, "timeout"], None, "steps[2] (wait_for_purchase).timeout: expected duration"),
        (["entry"], {"rule": "once_per"}, "entry.every: once_per needs every"),
        (["trigger", "event"], "has spaces", "trigger.event: event names are"),
        (["name"], "Bad Name", "name: a journey name is"),
    ],
)
def test_invalid_definitions_are_rejected_naming_the_field(path: list[Any], value: Any, message: str) -> None:
    assert str(_error(_with(path, value))).startswith(message)


def test_unknown_fields_and_missing_steps_are_rejected() -> None:
    raw = copy.deepcopy(BASE)
    raw["steps"][0]["colour"] = "red"
    assert str(_error(raw)) == "steps[0] (remind).colour: object contains unknown field `colour`"
    raw = copy.deepcopy(BASE)
    del raw["steps"]
    assert str(_error(raw)) == "steps: object missing required field `steps`"


def test_durations() -> None:
    assert parse_duration("30s").seconds == 30
    assert parse_duration("1h30m").seconds == 5400
    assert parse_duration("14d").seconds == 14 * 86400
    assert parse_duration(90).seconds == 90
    for bad in ("", "4 hours", "-1s", True, "1x"):
        with pytest.raises(ValueError, match="expected duration"):
            parse_duration(bad)


def test_a_bad_file_in_the_journeys_folder_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text((EXAMPLES / "otp.yaml").read_text())
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ntrigger: {event: x}\nsteps:\n  - {id: w, type: wait, duration: forever}\n"
    )
    with pytest.raises(DefinitionError) as caught:
        read_directory(tmp_path, ["transactional"])
    assert (
        str(caught.value)
        == f"{tmp_path / 'bad.yaml'}: steps[0] (w).duration: expected duration like 30s, 4h or 14d"
    )


async def test_versions_are_kept_and_unchanged_sources_keep_their_version(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    keys = Keys(f"{key_prefix}:defs-{uuid.uuid4().hex[:6]}")
    redis = Redis.from_url(redis_url)
    try:
        (tmp_path / "otp.yaml").write_text((EXAMPLES / "otp.yaml").read_text())
        first = await publish_directory(redis, keys, tmp_path, ["transactional"], 100.0)
        again = await publish_directory(redis, keys, tmp_path, ["transactional"], 200.0)
        assert [(p.name, p.version, p.changed) for p in first] == [("otp", 1, True)]
        assert [(p.name, p.version, p.changed) for p in again] == [("otp", 1, False)]
        source = example_source("otp")
        source["steps"][2]["body"] = "Code: {{ event.code }}"
        changed = await publish(redis, keys, parse_definition(source), source, 300.0)
        assert (changed.version, changed.changed) == (2, True)
        assert await current_versions(redis, keys) == {"otp": 2}
        old = await stored_version(redis, keys, "otp", 1)
        assert old is not None and old.published_at == 100.0
        assert old.source["steps"][2]["body"] != "Code: {{ event.code }}"
    finally:
        async for key in redis.scan_iter(match=keys.pattern()):
            await redis.unlink(key)
        await redis.aclose()
