"""Supervised loops: any exception is logged, backed off and retried, and readiness reports a
loop that is not running (through ShardActor.ping); a sender's exception fails its job instead."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import ray
from aiohttp import web
from aiohttp.test_utils import TestServer

from actors.loops import Backoff, Loops, LoopsNotRunning, LoopState, SupervisedLoop
from actors.supervisor import start_shard_actors, wait_until_ready
from channels.simulator.fixed_credentials import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN
from conversations.config import Config, TwilioConfig
from gateway.app import create_app
from gateway.routes.webhooks import status_callbacks
from tests.support.stack import eventually, unique_phone, wall_clock_free_policy

FAST = Backoff(base=0.01, cap=0.04)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [Backoff(0.5, 3.0).delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_a_body_raising_a_non_redis_error_is_retried_until_it_recovers() -> None:
    calls = 0
    recovered = asyncio.Event()
    forever = asyncio.Event()

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ValueError(f"boom {calls}")
        recovered.set()
        await forever.wait()

    loop = SupervisedLoop("flaky", body, FAST)
    loop.start()
    try:
        await asyncio.wait_for(recovered.wait(), 5)
        status = loop.status
        assert calls == 4
        assert (status.state, status.failures, status.restarts) == (LoopState.RUNNING, 3, 3)
        assert status.last_error == "ValueError: boom 3" and status.last_error_at is not None
    finally:
        await loop.stop()
    assert loop.status.state is LoopState.STOPPED


async def test_a_body_that_returns_is_started_again_too() -> None:
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1

    loop = SupervisedLoop("returns", body, FAST)
    loop.start()
    try:
        await eventually(lambda: _at_least(lambda: runs, 3))
        assert loop.status.last_error == "returned"
    finally:
        await loop.stop()


async def test_a_long_run_starts_the_failure_streak_over() -> None:
    now = [0.0]
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs > 3:
            await asyncio.Event().wait()
        now[0] += 100.0 if runs == 3 else 0.0  # the third run lasts longer than the cap
        raise RuntimeError("again")

    loop = SupervisedLoop("streak", body, FAST, clock=lambda: now[0])
    loop.start()
    try:
        await eventually(lambda: _at_least(lambda: runs, 4))
        assert (loop.status.failures, loop.status.restarts) == (1, 3)
    finally:
        await loop.stop()


async def test_loops_name_the_one_that_is_not_running() -> None:
    started = asyncio.Event()

    async def healthy() -> None:
        started.set()
        await asyncio.Event().wait()

    async def broken() -> None:
        raise KeyError("no such thing")

    loops = Loops(Backoff(base=60, cap=60))  # the broken loop stays in its backoff
    loops.start("healthy", healthy)
    loops.start("broken", broken)
    try:
        await asyncio.wait_for(started.wait(), 5)
        await eventually(lambda: _state(loops, "broken", LoopState.BACKING_OFF))
        with pytest.raises(LoopsNotRunning) as raised:
            loops.check()
        assert (
            str(raised.value) == "broken loop backing_off after 1 failure(s); last: KeyError: 'no such thing'"
        )
        assert "healthy" not in str(raised.value)
    finally:
        await loops.stop()
    assert {status.state for status in loops.statuses()} == {LoopState.STOPPED}


async def _at_least(value, minimum: int) -> bool:
    return value() >= minimum


async def _state(loops: Loops, name: str, state: LoopState) -> bool:
    return any(s.name == name and s.state is state for s in loops.statuses())


# --- a real shard whose outbox sender raises ---------------------------------------------


class FlakyTwilio:
    """Twilio's Messages endpoint behind something that answers 200 with an HTML page, until fixed."""

    def __init__(self) -> None:
        self.broken = True
        self.app = web.Application()
        self.app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._messages)

    async def _messages(self, request: web.Request) -> web.Response:
        await request.post()
        if self.broken:
            return web.Response(
                status=200, text="<html>Sign in to the Wi-Fi</html>", content_type="text/html"
            )
        return web.json_response({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}, status=201)


@pytest.fixture
async def flaky_shard(
    redis_url: str, ray_session: None
) -> AsyncIterator[tuple[FlakyTwilio, aiohttp.ClientSession, str]]:
    """One shard actor whose SMS provider misbehaves, and a gateway in front of it."""
    twilio = FlakyTwilio()
    provider = TestServer(twilio.app)
    await provider.start_server()
    prefix = f"tlloops-{uuid.uuid4().hex[:8]}"
    api_key = "loops-key-" + uuid.uuid4().hex[:8]
    config = Config(
        redis_url=redis_url,
        public_url="http://127.0.0.1:9",
        api_keys=[api_key],
        shards=1,
        key_prefix=prefix,
        ray_namespace=prefix,
        simulator=False,
        secret_key="loops-" + prefix,
        routing_policy=wall_clock_free_policy(),
        twilio=TwilioConfig(
            account_sid=SIMULATOR_ACCOUNT_SID,
            auth_token=SIMULATOR_AUTH_TOKEN,
            base_url=str(provider.make_url("")).rstrip("/"),
        ),
    )
    actors = start_shard_actors(config, status_callbacks(config.public_url))
    gateway = TestServer(create_app(config, actors))
    try:
        await wait_until_ready(actors)
        await gateway.start_server()
        async with aiohttp.ClientSession(
            base_url=str(gateway.make_url("")), headers={"Authorization": f"Bearer {api_key}"}
        ) as http:
            yield twilio, http, prefix
    finally:
        await gateway.close()
        for actor in actors:
            await actor.shutdown.remote()
            ray.kill(actor)
        await provider.close()


async def _send_sms(http: aiohttp.ClientSession, body: str) -> str:
    request = {"to": {"phone": unique_phone()}, "channel": "sms", "body": body}
    async with http.post("/v1/messages", json=request) as response:
        accepted = await response.json()
        assert response.status == 202, accepted
        return accepted["id"]


async def _readiness(http: aiohttp.ClientSession) -> tuple[int, dict]:
    async with http.get("/readyz") as response:
        return response.status, await response.json()


async def _attempt(http: aiohttp.ClientSession, message_id: str) -> dict | None:
    async with http.get(f"/v1/messages/{message_id}-1") as response:
        record = await response.json() if response.status == 200 else None
    return record if record and (record["error_code"] or record["provider_message_id"]) else None


async def test_a_sender_raising_anything_fails_the_attempt_and_the_outbox_keeps_running(
    flaky_shard: tuple[FlakyTwilio, aiohttp.ClientSession, str],
) -> None:
    """The provider answers HTML where JSON was due: the sender raises a DecodeError, not a
    ProviderError. The attempt fails with that error (never stuck as accepted), the outbox loop
    keeps serving, and the next send goes out once the provider is fixed."""
    twilio, http, _ = flaky_shard
    assert (await _readiness(http))[0] == 200
    crashed = await _send_sms(http, "your code is 1234")
    attempt = await eventually(lambda: _attempt(http, crashed), timeout=20)
    assert (attempt["status"], attempt["error_code"]) == ("failed", "sender_error")
    assert attempt["error_message"].startswith("DecodeError")  # the provider's HTML where JSON was due
    status, body = await _readiness(http)
    assert status == 200, body

    twilio.broken = False
    sent = await _send_sms(http, "your code is 5678")
    attempt = await eventually(lambda: _attempt(http, sent), timeout=20)
    assert attempt["provider_message_id"].startswith("SM") and attempt["error_code"] == ""
