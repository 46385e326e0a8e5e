"""Supervised loops: a coroutine factory run forever; any exception is logged, backed off, retried.

A shard actor's ingest, timer and outbox loops run under one ``Loops``; readiness asks it
whether every loop is running, so a loop that keeps failing cannot hide behind a live actor.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

log = logging.getLogger(__name__)


class LoopState(enum.StrEnum):
    """What a supervised loop is doing now."""

    RUNNING = "running"
    BACKING_OFF = "backing_off"  # its body failed; it is waiting to start it again
    STOPPED = "stopped"  # stopped on purpose (shutdown), or never started


class LoopStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One loop's state, for readiness and logs."""

    name: str
    state: LoopState
    failures: int = 0  # in a row; a run that lasts past the backoff cap starts the count over
    restarts: int = 0
    last_error: str = ""
    last_error_at: float | None = None

    def describe(self) -> str:
        """One line: the loop, its state and, when it failed, why."""
        text = f"{self.name} loop {self.state}"
        if self.last_error:
            text += f" after {self.failures} failure(s); last: {self.last_error}"
        return text


class Backoff(msgspec.Struct, frozen=True):
    """Exponential delay between restarts, capped."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        """The pause after the ``failures``-th failure in a row (1-based)."""
        return min(self.cap, self.base * 2 ** max(failures - 1, 0))


DEFAULT_BACKOFF = Backoff()


class LoopsNotRunning(RuntimeError):
    """Raised by readiness when some loop is not running; the message names each one."""


class SupervisedLoop:
    """Runs ``body()`` again whenever it raises (or returns: a loop meant to last that ends is a bug)."""

    def __init__(
        self,
        name: str,
        body: Callable[[], Awaitable[None]],
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._name = name
        self._body = body
        self._backoff = backoff
        self._clock = clock
        self._state = LoopState.STOPPED
        self._failures = 0
        self._restarts = 0
        self._last_error = ""
        self._last_error_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def status(self) -> LoopStatus:
        return LoopStatus(
            name=self._name,
            state=self._state,
            failures=self._failures,
            restarts=self._restarts,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
        )

    def start(self) -> None:
        """Start supervising (in the running event loop)."""
        if self._task is None or self._task.done():
            self._state = LoopState.RUNNING
            self._task = asyncio.create_task(self._supervise(), name=self._name)

    async def stop(self) -> None:
        """Cancel the body and stop retrying it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _supervise(self) -> None:
        try:
            while True:
                self._state = LoopState.RUNNING
                started = self._clock()
                try:
                    await self._body()
                    error = "returned"
                    log.error("%s loop returned; starting it again", self._name)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    log.exception("%s loop failed; starting it again after a pause", self._name)
                now = self._clock()
                if now - started >= self._backoff.cap:
                    self._failures = 0  # it ran well for a while: a fresh failure, not a streak
                self._failures += 1
                self._restarts += 1
                self._last_error, self._last_error_at = error, now
                self._state = LoopState.BACKING_OFF
                await asyncio.sleep(self._backoff.delay(self._failures))
        finally:
            self._state = LoopState.STOPPED


class Loops:
    """The supervised loops of one actor: started, checked and stopped together."""

    def __init__(self, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._backoff = backoff
        self._loops: list[SupervisedLoop] = []

    def start(self, name: str, body: Callable[[], Awaitable[None]]) -> SupervisedLoop:
        loop = SupervisedLoop(name, body, self._backoff)
        self._loops.append(loop)
        loop.start()
        return loop

    def statuses(self) -> list[LoopStatus]:
        return [loop.status for loop in self._loops]

    def check(self) -> None:
        """Raise LoopsNotRunning naming every loop that is not running now."""
        down = [status.describe() for status in self.statuses() if status.state is not LoopState.RUNNING]
        if down:
            raise LoopsNotRunning("; ".join(down))

    async def stop(self) -> None:
        await asyncio.gather(*(loop.stop() for loop in self._loops))
