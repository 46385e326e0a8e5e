"""Journey definitions in Redis: every published version kept, the current one per name.

Publishing is one Lua call that compares the new source with the current version's digest,
so several gateways loading the same folder at start create one version, not several.
Running instances name their version, which never changes once written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from conversations.journeys.definition import (
    Definition,
    DefinitionError,
    Journey,
    compile_journey,
    load_source,
    parse_definition,
)
from conversations.store import Keys

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}

# KEYS: the name -> version index, the journey's versions hash.
# ARGV: name, digest of the canonical source, the stored version document.
_PUBLISH = """
local digest = redis.call('HGET', KEYS[2], 'digest')
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and digest == ARGV[2] then
  return {tonumber(current), 0}
end
local version = redis.call('HINCRBY', KEYS[2], 'latest', 1)
redis.call('HSET', KEYS[2], tostring(version), ARGV[3], 'digest', ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], version)
return {version, 1}
"""


class StoredVersion(msgspec.Struct):
    """One published version: when, and the source as given (plain JSON data)."""

    published_at: float
    source: dict[str, Any]


class PublishedJourney(msgspec.Struct):
    name: str
    version: int
    changed: bool


def canonical(source: dict[str, Any]) -> bytes:
    """The source as sorted JSON, so equal definitions have equal digests."""
    return msgspec.json.encode(source, order="sorted")


async def publish(
    redis: Redis, keys: Keys, definition: Definition, source: dict[str, Any], now: float
) -> PublishedJourney:
    """Store ``source`` as the journey's next version unless it equals the current one."""
    body = canonical(source)
    digest = hashlib.sha256(body).hexdigest()
    stored = msgspec.json.encode(StoredVersion(now, source))
    script = redis.register_script(_PUBLISH)
    version, changed = await script(
        keys=[keys.journeys(), keys.journey_versions(definition.name)], args=[definition.name, digest, stored]
    )
    return PublishedJourney(definition.name, int(version), bool(changed))


async def current_versions(redis: Redis, keys: Keys) -> dict[str, int]:
    """Every journey's current version."""
    raw = await redis.hgetall(keys.journeys())
    return {name.decode(): int(version) for name, version in raw.items()}


async def stored_version(redis: Redis, keys: Keys, name: str, version: int) -> StoredVersion | None:
    blob = await redis.hget(keys.journey_versions(name), str(version))
    return msgspec.json.decode(blob, type=StoredVersion) if blob else None


async def versions_of(redis: Redis, keys: Keys, name: str) -> list[int]:
    fields = await redis.hkeys(keys.journey_versions(name))
    return sorted(int(f) for f in fields if f.isdigit())


def compile_stored(name: str, version: int, stored: StoredVersion) -> Journey:
    """The runnable journey of a stored version (its message types were checked at publish)."""
    definition = parse_definition(stored.source, message_types=None)
    if definition.name != name:
        raise DefinitionError("name", f"stored journey {name} v{version} names itself {definition.name}")
    return compile_journey(definition, version)


def read_directory(
    directory: str | Path, message_types: list[str] | tuple[str, ...]
) -> list[tuple[Definition, dict]]:
    """Parse every journey file directly in ``directory`` (not its subfolders), sorted by name.

    A missing folder holds no journeys; a bad file raises DefinitionError naming the file.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found: list[tuple[Definition, dict]] = []
    names: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        fmt = SUFFIXES.get(path.suffix.lower())
        if fmt is None or not path.is_file():
            continue
        try:
            source = load_source(path.read_text(), fmt)
            definition = parse_definition(source, message_types)
        except DefinitionError as exc:
            raise DefinitionError(exc.field, f"{path}: {exc.message}") from None
        if definition.name in names:
            raise DefinitionError(
                "name", f"{path}: journey {definition.name} is also defined in {names[definition.name]}"
            )
        names[definition.name] = path
        found.append((definition, source))
    return found


async def publish_directory(
    redis: Redis, keys: Keys, directory: str | Path, message_types: list[str] | tuple[str, ...], now: float
) -> list[PublishedJourney]:
    """Load the journeys folder at start: each file becomes its journey's current version."""
    return [
        await publish(redis, keys, definition, source, now)
        for definition, source in read_directory(directory, message_types)
    ]
