"""The wait helper: returns the first truthy value, and a timeout names what was awaited."""

from __future__ import annotations

import time

import pytest

from tests.support.wait import clock_passes, eventually


async def test_returns_the_first_truthy_value() -> None:
    calls: list[int] = []

    async def third_time() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) == 3 else None

    assert await eventually(third_time, interval=0.001) == 3


async def test_a_timeout_names_what_was_awaited_and_the_last_value() -> None:
    async def never() -> list[str]:
        return []

    with pytest.raises(AssertionError, match=r"waiting for the parcel \(last value: \[\]\)"):
        await eventually(never, timeout=0.05, what="the parcel")
    with pytest.raises(AssertionError, match="waiting for never"):
        await eventually(never, timeout=0.05)
    with pytest.raises(AssertionError, match=r"waiting for lambda: never\(\) \(last value"):
        await eventually(lambda: never(), timeout=0.05)


async def test_clock_passes_a_moment() -> None:
    moment = time.time()
    await clock_passes(moment)
    assert time.time() > moment
