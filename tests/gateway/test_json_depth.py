"""The JSON depth check answers in linear time: one crafted body must not stall the event loop."""

from __future__ import annotations

import time

from gateway.errors import json_depth
from tests.support.stack import Stack

# An array holding an unterminated string of escaped quotes, 1 MB: a backtracking string
# pattern restarts at every escaped quote and took about an hour on this.
CRAFTED = b'["' + b'\\"' * (512 * 1024 - 2)
BOUND_SECONDS = 2.0  # generous: the linear scan takes milliseconds; the old one, an hour


def test_the_crafted_body_is_measured_in_linear_time() -> None:
    assert len(CRAFTED) >= 1024 * 1024 - 2
    started = time.perf_counter()
    assert json_depth(CRAFTED) == 1
    assert time.perf_counter() - started < BOUND_SECONDS


def test_depth_still_ignores_brackets_in_strings_and_escapes() -> None:
    assert json_depth(b'{"a": "[[[[\\"]]]]", "b": [[1]]}') == 3
    assert json_depth(b'["\\\\", [["\\\\\\"["]]]') == 3
    assert json_depth(b'"[[["') == 0
    assert json_depth(b'["unterminated [[[') == 4  # an unterminated string counts its brackets


async def test_the_crafted_body_is_answered_quickly(stack: Stack) -> None:
    """Through the API, with an Idempotency-Key (the fingerprint checks depth too)."""
    headers = {**stack.auth, "Content-Type": "application/json", "Idempotency-Key": "crafted-depth"}
    started = time.perf_counter()
    async with stack.http.post(stack.gateway_url + "/v1/messages", data=CRAFTED, headers=headers) as response:
        assert response.status in (400, 422)  # an array where an object belongs, or bad JSON
        assert (await response.json())["error"]["code"] in ("invalid_json", "validation_failed")
    assert time.perf_counter() - started < BOUND_SECONDS
