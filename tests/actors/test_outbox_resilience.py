"""The outbox sender outlives Redis being down when it starts (as after an actor restart
during a Redis outage): once Redis is back it sends the queued job, exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from actors.outbox import OutboxSender
from channels.registry import build_senders
from channels.simulator.app import STATE, create_simulator_app
from channels.simulator.fixed_credentials import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN
from channels.simulator.settings import SimulatorSettings
from conversations.codec import decode_ingest, encode
from conversations.config import Config, TwilioConfig
from conversations.models import Channel, OutboxJob, SendOutcome
from conversations.store import INGEST_FIELD, Keys
from gateway.embedded import free_port
from gateway.routes.webhooks import status_callbacks
from tests.support.redis_server import spawn_redis_server
from tests.support.stack import eventually, unique_phone


async def test_sender_started_while_redis_is_down_sends_once_redis_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="actors.outbox")
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="tl-outbox-"))
    simulator = TestServer(
        create_simulator_app(
            SimulatorSettings(SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN, "http://127.0.0.1:9")
        )
    )
    await simulator.start_server()
    config = Config(
        redis_url=f"redis://127.0.0.1:{port}/0",
        public_url="http://127.0.0.1:9",
        twilio=TwilioConfig(
            account_sid=SIMULATOR_ACCOUNT_SID,
            auth_token=SIMULATOR_AUTH_TOKEN,
            base_url=str(simulator.make_url("")).rstrip("/"),
        ),
    )
    keys = Keys(f"outbox-{uuid.uuid4().hex[:6]}")
    redis = Redis.from_url(config.redis_url)
    process = None
    async with aiohttp.ClientSession() as session:
        sender = OutboxSender(
            redis, keys, 0, build_senders(session, config), status_callbacks(config.public_url).url
        )
        task = asyncio.create_task(sender.run())
        try:
            # Nothing listens on the port yet: its reads fail, and it retries rather than giving up.
            await eventually(lambda: _failed_reads(caplog, 2), timeout=30, what="two failed outbox reads")
            assert not task.done(), "the sender gave up while Redis was down"
            process = await asyncio.to_thread(spawn_redis_server, port, data_dir)
            phone = unique_phone()
            job = OutboxJob("msg_RESILIENT", "cus_0_X", Channel.SMS, phone, "after the outage")
            await redis.xadd(keys.outbox(0), {INGEST_FIELD: encode(job)})
            sent = await eventually(lambda: _sent_to(simulator, phone), timeout=30)
            assert [m["body"] for m in sent] == ["after the outage"]
            outcomes = await eventually(lambda: redis.xrange(keys.ingest(0)), timeout=10)
            (outcome,) = [decode_ingest(fields[INGEST_FIELD]) for _, fields in outcomes]
            assert isinstance(outcome, SendOutcome) and outcome.message_id == "msg_RESILIENT"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await redis.aclose()
            await simulator.close()
            if process is not None:
                process.terminate()
                process.wait(10)
            shutil.rmtree(data_dir, ignore_errors=True)


async def _sent_to(simulator: TestServer, phone: str) -> list[dict]:
    return [m for m in simulator.app[STATE].sent if m["to"] == phone]


async def _failed_reads(caplog: pytest.LogCaptureFixture, at_least: int) -> int | None:
    """How many times the sender logged a failed read, once that is ``at_least``."""
    failed = sum("outbox read failed" in record.getMessage() for record in caplog.records)
    return failed if failed >= at_least else None
