"""The deployment's layout: a fixed slot count, and retired shards' keys adopted by live shards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from actors.streams import ensure_group, new_batch
from conversations import layout, timers
from conversations.codec import decode_ingest, encode
from conversations.models import Channel, InboundMessage
from conversations.normalize import phone_identifier
from conversations.store import INGEST_FIELD, Keys
from gateway.app import create_app
from tests.support.stack import make_config, unique_phone


@pytest.fixture
async def env(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Redis, Keys]]:
    keys = Keys(f"{key_prefix}:layout-{uuid.uuid4().hex[:6]}")
    redis = Redis.from_url(redis_url)
    yield redis, keys
    async for key in redis.scan_iter(match=keys.pattern()):
        await redis.unlink(key)
    await redis.aclose()


def _inbound(body: str) -> InboundMessage:
    return InboundMessage(
        Channel.SMS, "twilio", "SM" + uuid.uuid4().hex, phone_identifier(unique_phone()), "", body, 1.0
    )


def test_each_retired_shard_goes_to_exactly_one_live_shard() -> None:
    assert [layout.retired_for(shard, 2, 16) for shard in range(2)] == [
        [2, 4, 6, 8, 10, 12, 14],
        [3, 5, 7, 9, 11, 13, 15],
    ]
    assert layout.retired_for(0, 4, 4) == [] and layout.retired_for(2, 3, 16) == [5, 8, 11, 14]


async def test_the_slot_count_is_fixed_once_recorded(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    await layout.check_slots(redis, keys, 1024)
    await layout.check_slots(redis, keys, 1024)
    with pytest.raises(layout.LayoutMismatch, match="slots = 1024"):
        await layout.check_slots(redis, keys, 512)
    with pytest.raises(layout.LayoutMismatch):
        await layout.record_layout(redis, keys, 2048, 2)


async def test_an_old_deployment_s_shards_are_found_once_and_remembered(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    # Keys an old 16-shard deployment left (no layout recorded then); the gateway came up first.
    await redis.set(keys.dedupe(3, "twilio:SM1"), "1")
    await redis.xadd(keys.ingest(15), {INGEST_FIELD: b"x"})
    await layout.check_slots(redis, keys, 1024)
    assert await layout.record_layout(redis, keys, 1024, 2) == 16
    await redis.delete(keys.ingest(15))  # adopted: the keys are gone, the count is remembered
    assert await layout.record_layout(redis, keys, 1024, 2) == 16
    assert await layout.record_layout(redis, keys, 1024, 32) == 16
    assert await layout.record_layout(redis, keys, 1024, 2) == 32


async def test_a_retired_shard_s_pending_entries_outbox_and_timers_move_to_its_adopter(
    env: tuple[Redis, Keys],
) -> None:
    redis, keys = env
    read, unread = _inbound("read, never acked"), _inbound("never read")
    await ensure_group(redis, keys.ingest(5))
    await redis.xadd(keys.ingest(5), {INGEST_FIELD: encode(read)})
    assert len(await new_batch(redis, keys.ingest(5), "shard-5", 1, 10)) == 1  # pending when it stopped
    await redis.xadd(keys.ingest(5), {INGEST_FIELD: encode(unread)})
    await redis.xadd(keys.outbox(5), {INGEST_FIELD: b"job"})
    await redis.xadd(keys.dead_letters(5), {INGEST_FIELD: b"bad", b"id": b"1-0"})
    pipe = redis.pipeline(transaction=True)
    timers.schedule(pipe, keys, 5, "wait:1", 1234.5, _inbound("later"))
    await pipe.execute()
    await redis.xadd(keys.ingest(1), {INGEST_FIELD: encode(_inbound("already here"))})

    assert await layout.adopt(redis, keys, 5, 1, chunk=1) == 5

    moved = [decode_ingest(fields[INGEST_FIELD]) for _, fields in await redis.xrange(keys.ingest(1))]
    assert [getattr(entry, "body", None) for entry in moved] == ["already here", read.body, unread.body]
    assert [f[INGEST_FIELD] for _, f in await redis.xrange(keys.outbox(1))] == [b"job"]
    assert [f[b"id"] for _, f in await redis.xrange(keys.dead_letters(1))] == [b"1-0"]
    assert await redis.zscore(keys.timers(1), "wait:1") == 1234.5
    assert await redis.hget(keys.timer_entries(1), "wait:1") is not None
    retired = [keys.ingest(5), keys.outbox(5), keys.timers(5), keys.timer_entries(5), keys.dead_letters(5)]
    assert await redis.exists(*retired) == 0
    assert await layout.adopt(redis, keys, 5, 1) == 0


async def test_a_gateway_configured_with_another_slot_count_refuses_to_start(
    env: tuple[Redis, Keys], redis_url: str
) -> None:
    redis, keys = env
    await layout.check_slots(redis, keys, 1024)  # the deployment's customer ids name 1,024 slots
    config = msgspec.structs.replace(make_config(redis_url, 1, 2, keys.prefix), slots=512, shards=2)
    with pytest.raises(layout.LayoutMismatch, match="set slots = 1024"):
        async with TestClient(TestServer(create_app(config, shard_actors=[]))):
            pass
