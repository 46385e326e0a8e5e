"""Concurrent callers share one pipeline and each gets exactly its own replies."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from actors.coalesce import PipelineCoalescer
from tests.conftest import delete_prefix


@pytest.mark.parametrize("transaction", [False, True])
async def test_each_caller_gets_its_own_replies(redis_url: str, key_prefix: str, transaction: bool) -> None:
    prefix = f"{key_prefix}-coalesce-{uuid.uuid4().hex[:6]}"
    redis = Redis.from_url(redis_url)
    coalescer = PipelineCoalescer(redis, transaction=transaction)
    try:

        async def caller(index: int) -> list:
            key = f"{prefix}:k{index}"
            return await coalescer.submit(
                lambda pipe: (pipe.set(key, index, nx=True), pipe.incrby(key, index))
            )

        replies = await asyncio.gather(*(caller(i) for i in range(50)))
        assert replies == [[True, 2 * i] for i in range(50)]
        # a second round on the same keys: SET NX now refuses, and each caller still sees only its own
        again = await asyncio.gather(*(caller(i) for i in range(0, 50, 7)))
        assert again == [[None, 3 * i] for i in range(0, 50, 7)]
    finally:
        await redis.aclose()
        await delete_prefix(redis_url, prefix)


async def test_a_failed_command_fails_only_its_caller(redis_url: str, key_prefix: str) -> None:
    prefix = f"{key_prefix}-coalesce-{uuid.uuid4().hex[:6]}"
    redis = Redis.from_url(redis_url)
    await redis.set(f"{prefix}:text", "not a number")
    coalescer = PipelineCoalescer(redis, transaction=False)
    try:
        good = coalescer.submit(lambda pipe: pipe.incr(f"{prefix}:n"))
        bad = coalescer.submit(lambda pipe: pipe.incr(f"{prefix}:text"))
        good_reply, bad_reply = await asyncio.gather(good, bad, return_exceptions=True)
        assert good_reply == [1]
        assert isinstance(bad_reply, ResponseError)
        assert await coalescer.submit(lambda pipe: pipe.incr(f"{prefix}:n")) == [2]
    finally:
        await redis.aclose()
        await delete_prefix(redis_url, prefix)
