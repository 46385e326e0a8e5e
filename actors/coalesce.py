"""One Redis pipeline for the commands that many concurrent tasks issue at about the same time.

The outbox sender runs up to ``send_concurrency`` sends at once, and each wants a command or
two around its provider call. Issued one by one they cost a round trip and a pooled
connection each (64 connections per shard under load); coalesced they cost one pipeline per
round trip, whatever the concurrency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

AddCommands = Callable[[Pipeline], Any]


class PipelineCoalescer:
    """Queues each caller's commands; one pipeline at a time carries everything queued so far.

    While a pipeline is in flight, new callers queue for the next one, so batches grow with
    load and an idle caller waits at most one extra round trip. With ``transaction`` the
    pipeline is a MULTI/EXEC, so each caller's commands still apply together or not at all.
    """

    def __init__(self, redis: Redis, transaction: bool) -> None:
        self._redis = redis
        self._transaction = transaction
        self._queued: list[tuple[AddCommands, asyncio.Future[list[Any]]]] = []
        self._runner: asyncio.Task | None = None

    async def submit(self, add: AddCommands) -> list[Any]:
        """Queue the commands ``add(pipe)`` adds; returns their replies, or raises the first error among them."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queued.append((add, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[AddCommands, asyncio.Future[list[Any]]]] = []
        try:
            await asyncio.sleep(0)  # let the callers woken in this loop turn join the first batch
            while self._queued:
                batch, self._queued = self._queued, []
                await self._execute(batch)
        except asyncio.CancelledError:
            for _, future in batch + self._queued:
                future.cancel()
            self._queued = []
            raise
        finally:
            self._runner = None

    async def _execute(self, batch: list[tuple[AddCommands, asyncio.Future[list[Any]]]]) -> None:
        pipe = self._redis.pipeline(transaction=self._transaction)
        spans = []
        for add, _ in batch:
            start = len(pipe.command_stack)
            add(pipe)
            spans.append((start, len(pipe.command_stack)))
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the round trip itself failed: nobody's commands are known to have run
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (start, end), (_, future) in zip(spans, batch, strict=True):
            mine = replies[start:end]
            error = next((reply for reply in mine if isinstance(reply, Exception)), None)
            if future.done():
                continue
            if error is not None:  # only the caller whose command failed sees the error
                future.set_exception(error)
            else:
                future.set_result(mine)
