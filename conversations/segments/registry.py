"""Segment definitions in Redis: every version kept, the current one per name, and their state.

Publishing is one Lua call (an unchanged definition keeps its version, so several gateways
loading the same folder create one version). A segment deleted and defined again starts a new
*epoch*: memberships a customer's facts remember from the earlier life do not count.
Counts and backfill progress are per shard; reading them is one small read per shard.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from conversations import stream_entries
from conversations.models import SegmentBackfill
from conversations.segments.definition import Segment, load_source, parse_segment
from conversations.segments.rules import Rule, RuleError, check_references, evaluation_order
from conversations.store import Keys

# KEYS: the name -> version index, the segment's versions hash.
# ARGV: name, digest of the canonical source, the stored version document.
_PUBLISH = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and redis.call('HGET', KEYS[2], 'digest') == ARGV[2] then
  return {tonumber(current), 0, tonumber(redis.call('HGET', KEYS[2], 'epoch'))}
end
local version = redis.call('HINCRBY', KEYS[2], 'latest', 1)
redis.call('HSET', KEYS[2], tostring(version), ARGV[3], 'digest', ARGV[2])
if not current then
  redis.call('HSET', KEYS[2], 'epoch', version)
end
redis.call('HSET', KEYS[1], ARGV[1], version)
return {version, 1, tonumber(redis.call('HGET', KEYS[2], 'epoch'))}
"""


class StoredSegment(msgspec.Struct):
    """One published version: when, and the source as given."""

    published_at: float
    source: dict[str, Any]


class PublishedSegment(msgspec.Struct):
    name: str
    version: int
    changed: bool
    epoch: int


class SegmentState(msgspec.Struct, frozen=True):
    """The current version of a segment, compiled: what a shard evaluates."""

    name: str
    version: int
    epoch: int
    rule: Rule


async def publish(
    redis: Redis, keys: Keys, segment: Segment, source: dict[str, Any], now: float
) -> PublishedSegment:
    """Store ``source`` as the segment's next version unless it equals the current one."""
    body = msgspec.json.encode(source, order="sorted")
    digest = hashlib.sha256(body).hexdigest()
    script = redis.register_script(_PUBLISH)
    stored = msgspec.json.encode(StoredSegment(now, source))
    versions_key = keys.segment_versions(segment.name)
    version, changed, epoch = await script(
        keys=[keys.segments(), versions_key], args=[segment.name, digest, stored]
    )
    return PublishedSegment(segment.name, int(version), bool(changed), int(epoch))


async def current_versions(redis: Redis, keys: Keys) -> dict[str, int]:
    raw = await redis.hgetall(keys.segments())
    return {name.decode(): int(version) for name, version in raw.items()}


async def stored_version(redis: Redis, keys: Keys, name: str, version: int) -> StoredSegment | None:
    blob = await redis.hget(keys.segment_versions(name), str(version))
    return decode_stored(blob) if blob else None


def decode_stored(blob: bytes) -> StoredSegment:
    return msgspec.json.decode(blob, type=StoredSegment)


async def current_rules(redis: Redis, keys: Keys) -> dict[str, Rule]:
    """Every defined segment's current rule (for reference checks at publish)."""
    found: dict[str, Rule] = {}
    for name, version in (await current_versions(redis, keys)).items():
        stored = await stored_version(redis, keys, name, version)
        if stored is not None:
            found[name] = parse_segment(stored.source).rule
    return found


async def check_publishable(redis: Redis, keys: Keys, segment: Segment) -> None:
    """RuleError (``unknown_segment``, ``segment_cycle``) unless its references are sound."""
    others = await current_rules(redis, keys)
    others.pop(segment.name, None)
    check_references(segment.name, segment.rule, others)


def compile_stored(name: str, version: int, epoch: int, stored: StoredSegment) -> SegmentState:
    return SegmentState(name, version, epoch, parse_segment(stored.source).rule)


async def delete(redis: Redis, keys: Keys, name: str, shards: int) -> bool:
    """Forget the segment (its versions stay, so a new one starts a new epoch); drop its members."""
    removed = bool(await redis.hdel(keys.segments(), name))
    if removed:
        pipe = redis.pipeline(transaction=False)
        for shard in range(shards):
            pipe.unlink(keys.segment_members(shard, name))
            pipe.hdel(keys.segment_counts(shard), name)
            pipe.hdel(keys.segment_backfilled(shard), name)
        await pipe.execute()
    return removed


async def count(redis: Redis, keys: Keys, name: str, shards: int) -> int:
    """Members over every shard: one counter per shard, summed (never a scan)."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(shards):
        pipe.hget(keys.segment_counts(shard), name)
    return sum(int(found or 0) for found in await pipe.execute())


async def backfilled(redis: Redis, keys: Keys, name: str, version: int, shards: int) -> bool:
    """Whether every shard finished backfilling ``version`` (or a later one)."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(shards):
        pipe.hget(keys.segment_backfilled(shard), name)
    return all(found is not None and int(found) >= version for found in await pipe.execute())


async def members(
    redis: Redis, keys: Keys, name: str, shards: int, limit: int, cursor: tuple[int, str] | None
) -> tuple[list[str], tuple[int, str] | None]:
    """Up to ``limit`` member ids in (shard, id) order after ``cursor``; and the next cursor."""
    shard, after = cursor if cursor is not None else (0, "")
    found: list[str] = []
    while shard < shards and len(found) < limit:
        low = f"({after}" if after else "-"
        page = await redis.zrangebylex(keys.segment_members(shard, name), low, "+", 0, limit - len(found))
        found.extend(member.decode() for member in page)
        if len(found) < limit:
            shard, after = shard + 1, ""
        else:
            after = found[-1]
    if len(found) < limit or shard >= shards:
        return found, None
    return found, (shard, after)


SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def read_directory(directory: str | Path) -> list[tuple[Segment, dict[str, Any]]]:
    """Parse every segment file directly in ``directory``, referred segments first.

    A missing folder holds no segments; a bad file raises RuleError naming the file.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found: dict[str, tuple[Segment, dict[str, Any], Path]] = {}
    for path in sorted(folder.iterdir()):
        fmt = SUFFIXES.get(path.suffix.lower())
        if fmt is None or not path.is_file():
            continue
        try:
            source = load_source(path.read_text(), fmt)
            segment = parse_segment(source)
        except RuleError as exc:
            raise RuleError(exc.field, f"{path}: {exc.message}", exc.code) from None
        if segment.name in found:
            raise RuleError(
                "name", f"{path}: segment {segment.name} is also defined in {found[segment.name][2]}"
            )
        found[segment.name] = (segment, source, path)
    rules = {name: segment.rule for name, (segment, _, _) in found.items()}
    for name, (segment, _, path) in found.items():
        try:
            check_references(name, segment.rule, {n: r for n, r in rules.items() if n != name})
        except RuleError as exc:
            raise RuleError(exc.field, f"{path}: {exc.message}", exc.code) from None
    return [(found[name][0], found[name][1]) for name in evaluation_order(rules)]


async def publish_directory(
    redis: Redis, keys: Keys, directory: str | Path, shards: int, now: float
) -> list[PublishedSegment]:
    """Load the segments folder at start: each file becomes its segment's current version, and a
    changed one is backfilled (an unchanged file keeps its version and starts nothing)."""
    published = []
    for segment, source in read_directory(directory):
        done = await publish(redis, keys, segment, source, now)
        if done.changed:
            await queue_backfill(redis, keys, done.name, done.version, shards)
        published.append(done)
    return published


async def queue_backfill(redis: Redis, keys: Keys, name: str, version: int, shards: int) -> None:
    """Every shard evaluates ``version`` over its customers, chunk by chunk, beside live traffic."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(shards):
        stream_entries.append(pipe, keys.ingest(shard), SegmentBackfill(name, version))
    await pipe.execute()
