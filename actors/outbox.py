"""The shard's sender: takes jobs off the outbox stream and hands them to providers.

A job's outcome is written back to the shard's ingest stream as a SendOutcome, so the
message record keeps a single writer (the ingest processor). An attempt marker set before
the provider call means a job interrupted by a crash is never sent a second time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from actors.coalesce import PipelineCoalescer
from actors.streams import ensure_group, new_batch, pending_batches
from channels.base import ChannelUnreachable, ProviderError, Sender
from conversations import stream_entries
from conversations.codec import decode_outbox_job
from conversations.models import Channel, MessageStatus, OutboxJob, SendOutcome
from conversations.store import CONSUMER_GROUP, INGEST_FIELD, Keys

log = logging.getLogger(__name__)

ATTEMPT_TTL = 7 * 24 * 3600
MAX_ERROR_MESSAGE = 500  # of a sender's unexpected exception, as the attempt's error_message


class RetryPolicy(msgspec.Struct, frozen=True):
    """Exponential backoff with full jitter for transient provider failures."""

    max_attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 20.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


class OutboxSender:
    """Consumes one shard's outbox with bounded concurrency."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        shard: int,
        senders: Mapping[Channel, Sender],
        callback_url: Callable[[OutboxJob], str],
        concurrency: int = 64,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._shard = shard
        self._senders = senders
        self._callback_url = callback_url
        self._slots = asyncio.Semaphore(concurrency)
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._stream = keys.outbox(shard)
        self._consumer = f"shard-{shard}"
        self._in_flight: set[asyncio.Task] = set()
        # The per-job commands around the provider call, coalesced across concurrent sends:
        # attempt markers in one plain pipeline, acks in one MULTI/EXEC (atomic per job).
        self._markers = PipelineCoalescer(redis, transaction=False)
        self._acks = PipelineCoalescer(redis, transaction=True)
        self._active: set[bytes] = set()  # stream ids of the jobs running now
        self._crash: BaseException | None = None  # a job's unexpected error, for run() to raise
        self.sent = 0
        self.failed = 0

    async def run(self) -> None:
        """Forever: first the jobs a previous incarnation left pending, then new ones.

        Redis errors (an outage, or a restart of this actor while Redis is down) pause and
        retry instead of ending the task, which would leave the shard's outbox unserved. A
        sender's exception fails its job (``sender_error``). Any other error ends the task: its
        supervisor (actors.loops) logs, backs off and runs it again, and the replay reports a
        crashed job's outcome as unknown.
        """
        replayed = False
        while True:
            try:
                await ensure_group(self._redis, self._stream)
                if not replayed:
                    async for batch in pending_batches(self._redis, self._stream, self._consumer, 256):
                        for stream_id, fields in batch:
                            await self._start(stream_id, fields)
                    replayed = True
                while True:
                    self._raise_crash()
                    batch = await new_batch(self._redis, self._stream, self._consumer, 256, 1000)
                    for stream_id, fields in batch:
                        await self._start(stream_id, fields)
            except RedisError as exc:
                log.warning("shard %s outbox read failed: %s", self._shard, exc)
                await asyncio.sleep(0.5)

    async def drain(self) -> None:
        """Wait for the sends in flight (graceful shutdown)."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _start(self, stream_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        if stream_id in self._active:  # a replay after a Redis error re-reads jobs still running
            return
        self._active.add(stream_id)
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(stream_id, fields))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)
        task.add_done_callback(lambda _: self._active.discard(stream_id))

    def _finished(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox job crashed", exc_info=task.exception())
            self._crash = self._crash or task.exception()

    def _raise_crash(self) -> None:
        """Raise the first error a job crashed with since the last call (a sender's bug)."""
        crash, self._crash = self._crash, None
        if crash is not None:
            raise RuntimeError(f"shard {self._shard}: an outbox job crashed: {crash!r}") from crash

    async def _handle(self, stream_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        if not fields:
            await self._ack(stream_id, None)
            return
        try:
            job = decode_outbox_job(fields[INGEST_FIELD])
        except (msgspec.DecodeError, KeyError):
            log.error("shard %s: undecodable outbox job %r", self._shard, stream_id)
            await self._ack(stream_id, None)
            return
        first = await self._mark_attempt(job)
        if not first:
            # A previous incarnation may have reached the provider: never risk a second send.
            outcome = self._outcome(
                job,
                MessageStatus.SENDING,
                error_code="outcome_unknown",
                error_message="sender restarted during the provider call; not sent again",
            )
            await self._ack(stream_id, outcome)
            return
        outcome = await self._send_with_retries(job)
        await self._ack(stream_id, outcome)

    def _queue_marker(self, job: OutboxJob, pipe: Any) -> None:
        pipe.set(self._keys.send_attempt(job.message_id), repr(self._clock()), nx=True, ex=ATTEMPT_TTL)

    async def _mark_attempt(self, job: OutboxJob) -> bool:
        """Set the attempt marker, waiting out Redis errors (a crashed task would strand the job).

        A marker whose reply was lost reads as "already attempted": the job is then reported
        as outcome unknown rather than risking a second send.
        """
        while True:
            try:
                (first,) = await self._markers.submit(functools.partial(self._queue_marker, job))
                return bool(first)
            except RedisError as exc:
                log.warning("shard %s attempt marker failed, retrying: %s", self._shard, exc)
                await asyncio.sleep(0.5)

    async def _send_with_retries(self, job: OutboxJob) -> SendOutcome:
        sender = self._senders.get(job.channel)
        if sender is None:
            return self._outcome(
                job,
                MessageStatus.FAILED,
                error_code="channel_unavailable",
                error_message=f"no sender configured for {job.channel}",
            )
        try:
            return await self._send_one(job, sender)
        except ChannelUnreachable as exc:
            # The customer cannot be reached on this channel at all: routing decides what next
            # (e.g. the SMS step of a message pinned to RCS), never the sender.
            self.failed += 1
            return self._outcome(job, MessageStatus.FAILED, error_code=exc.code, error_message=str(exc))

    async def _send_one(self, job: OutboxJob, sender: Sender) -> SendOutcome:
        """One job through one sender, retrying transient failures."""
        attempt = 0
        while True:
            try:
                result = await sender.send(job, self._callback_url(job))
            except ChannelUnreachable:
                raise
            except ProviderError as exc:
                ambiguous = exc.code == "timeout"
                if exc.retryable and not ambiguous and attempt + 1 < self._retry.max_attempts:
                    await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))
                    attempt += 1
                    continue
                self.failed += 1
                if ambiguous:
                    return self._outcome(
                        job,
                        MessageStatus.SENDING,
                        error_code="outcome_unknown",
                        error_message="provider call timed out; not retried to avoid a duplicate",
                    )
                return self._outcome(
                    job,
                    MessageStatus.FAILED,
                    error_code=exc.code or "provider_error",
                    error_message=str(exc),
                )
            except Exception as exc:
                # A sender's bug or an input it cannot take (a header with a line break, a
                # provider answering HTML): the job fails with the error, never stays accepted.
                log.exception("shard %s: %s sender raised on %s", self._shard, job.channel, job.message_id)
                self.failed += 1
                return self._outcome(
                    job,
                    MessageStatus.FAILED,
                    error_code="sender_error",
                    error_message=f"{type(exc).__name__}: {exc}"[:MAX_ERROR_MESSAGE],
                )
            self.sent += 1
            return SendOutcome(
                message_id=job.message_id,
                customer_id=job.customer_id,
                provider=result.provider,
                status=result.status,
                at=self._clock(),
                provider_message_id=result.provider_message_id,
                segments=result.segments,
                price=result.price,
            )

    def _outcome(
        self, job: OutboxJob, status: MessageStatus, *, error_code: str, error_message: str
    ) -> SendOutcome:
        sender = self._senders.get(job.channel)
        return SendOutcome(
            message_id=job.message_id,
            customer_id=job.customer_id,
            provider=sender.provider if sender else "",
            status=status,
            at=self._clock(),
            error_code=error_code,
            error_message=error_message,
        )

    def _add_ack(self, pipe: Pipeline, stream_id: bytes, outcome: SendOutcome | None) -> None:
        if outcome is not None:
            stream_entries.append(pipe, self._keys.ingest(self._shard), outcome)
        pipe.xack(self._stream, CONSUMER_GROUP, stream_id)
        pipe.xdel(self._stream, stream_id)

    async def _ack(self, stream_id: bytes, outcome: SendOutcome | None) -> None:
        """Record the outcome on the ingest stream and ack the job, atomically."""
        while True:
            try:
                await self._acks.submit(lambda pipe: self._add_ack(pipe, stream_id, outcome))
                return
            except RedisError as exc:
                log.warning("shard %s outbox ack failed, retrying: %s", self._shard, exc)
                await asyncio.sleep(0.5)
