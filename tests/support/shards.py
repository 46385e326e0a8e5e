"""A shard's streams and timers as tests see them in Redis: wait for it to settle, list timers."""

from __future__ import annotations

from redis.asyncio import Redis

from conversations.codec import decode_ingest
from conversations.normalize import phone_identifier
from conversations.sharding import shard_for_customer, shard_for_identifier
from conversations.slots import SlotMap
from conversations.store import Keys
from tests.support.stack import Stack, unique_phone
from tests.support.wait import eventually


def phones_on_shard(count: int, shard: int, slot_map: SlotMap) -> list[str]:
    """``count`` fresh phone numbers whose customers are homed on ``shard``."""
    phones: list[str] = []
    while len(phones) < count:
        phone = unique_phone()
        if shard_for_identifier(phone_identifier(phone), slot_map) == shard:
            phones.append(phone)
    return phones


async def _handled_through_newest(redis: Redis, stream: str, what: str, timeout: float) -> None:
    """Wait until every entry now on ``stream`` is handled (handlers delete what they finish)."""
    newest = await redis.xrevrange(stream, count=1)
    if not newest:
        return
    mark = newest[0][0]

    async def handled() -> bool:
        return not await redis.xrange(stream, max=mark, count=1)

    await eventually(handled, timeout, what=f"{what} to handle every entry up to {mark.decode()}")


async def settle(stack: Stack, shard: int, timeout: float = 30.0) -> None:
    """Wait until the shard has applied what is on its ingest stream now, sent the jobs that made
    and applied their outcomes.

    Afterwards anything released onto the stream before the call (a fired timer, a webhook) has
    had its whole effect: a send it caused has reached the provider (or the simulator).
    """
    keys = Keys(stack.config.key_prefix)
    redis = Redis.from_url(stack.config.redis_url)
    try:
        await _handled_through_newest(redis, keys.ingest(shard), f"shard {shard}'s batches", timeout)
        await _handled_through_newest(redis, keys.outbox(shard), f"shard {shard}'s sender", timeout)
        await _handled_through_newest(redis, keys.ingest(shard), f"shard {shard}'s batches", timeout)
    finally:
        await redis.aclose()


def home_shard(stack: Stack, customer_id: str) -> int:
    """The shard a customer id names as its home."""
    shard = shard_for_customer(customer_id, stack.config.slot_map())
    assert shard is not None, customer_id
    return shard


async def timers_of(stack: Stack, customer_id: str) -> list[str]:
    """The ids of the customer's timers that have not fired yet, on its home shard."""
    keys = Keys(stack.config.key_prefix)
    redis = Redis.from_url(stack.config.redis_url)
    try:
        entries = await redis.hgetall(keys.timer_entries(home_shard(stack, customer_id)))
    finally:
        await redis.aclose()
    return sorted(
        timer_id.decode()
        for timer_id, blob in entries.items()
        if getattr(decode_ingest(blob), "customer_id", None) == customer_id
    )
