"""Waiting on conditions instead of sleeping: poll with a deadline, fail naming what was awaited."""

from __future__ import annotations

import ast
import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _describe(probe: Callable[..., object]) -> str:
    """A probe's name, or a lambda's source line: what the failure message says was awaited."""
    name = getattr(probe, "__name__", "")
    if name and name != "<lambda>":
        return name.replace("_", " ")
    try:
        source = inspect.getsource(probe).strip()
    except (OSError, TypeError):
        return repr(probe)
    try:
        lambdas = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Lambda)]
    except SyntaxError:  # a line cut out of a longer statement
        lambdas = []
    if lambdas:
        return ast.get_source_segment(source, lambdas[0]) or source
    return source


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    what: str = "",
) -> T:
    """Poll ``probe`` until it returns something truthy and return that.

    After ``timeout`` seconds fail with an AssertionError naming ``what`` was awaited (by default
    the probe's name or source) and the probe's last value.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(interval)  # the polling interval, not a synchronisation
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or _describe(probe)} (last value: {last!r})"
    )


def eventually_sync(
    probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.2, *, what: str = ""
) -> T:
    """``eventually`` for code outside an event loop (a subprocess to watch, a process tree)."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)  # the polling interval, not a synchronisation
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or _describe(probe)} (last value: {last!r})"
    )


async def clock_passes(moment: float) -> None:
    """Wait until the wall clock is strictly past ``moment`` (so the next timestamp is later)."""

    async def passed() -> bool:
        return time.time() > moment

    await eventually(passed, what=f"the wall clock to pass {moment!r}", interval=0.001)
