"""Chaos run: mixed load while shard actors die, Redis restarts and the provider fails.

Starts its own AOF Redis, a local Ray with the shard actors, the provider simulator and a
gateway, all on loopback. For a bounded time it drives signed inbound webhooks (retried with
the same MessageSid, as Twilio does) and API sends (retried with the same Idempotency-Key),
while it kills a random shard actor every few seconds (Ray restarts it), kills and restarts
Redis once over the same AOF, and makes the simulator answer 5xx for a while. Then it lets the
system settle and counts, from Redis and the simulator:

    accepted   requests answered 2xx        persisted  of those, stored (thread + record)
    sent       sends the provider received  delivered  messages whose status is delivered
    lost       accepted but not persisted, or an accepted send never attempted
    duplicates a thread entry or a provider send seen more than once

and exits 1 when lost or duplicates is not 0. ``--short`` runs in under two minutes.

    python bench/chaos.py --short
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import msgspec
import ray
from aiohttp import web
from redis.asyncio import Redis

from actors.supervisor import connect_ray, start_shard_actors, wait_until_ready
from channels.simulator.app import STATE, FailureScript, create_simulator_app
from channels.simulator.fixed_credentials import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN
from channels.simulator.settings import SimulatorSettings
from channels.twilio_signature import compute_signature
from conversations.codec import decode_message, decode_thread_event
from conversations.config import Config, TwilioConfig
from conversations.models import MessageLogged, MessageStatus
from conversations.normalize import phone_identifier
from conversations.store import INGEST_FIELD, Keys
from gateway.app import create_app
from gateway.embedded import free_port, port_open
from gateway.routes.webhooks import status_callbacks

log = logging.getLogger("chaos")
API_KEY = "chaos-" + uuid.uuid4().hex
FINAL = {MessageStatus.DELIVERED, MessageStatus.FAILED, MessageStatus.UNDELIVERED, MessageStatus.READ}


@dataclass(frozen=True)
class Plan:
    """How long and how hard: load, and when each fault happens (seconds from the start)."""

    duration: float
    rate: float  # requests per second, half inbound, half outbound
    kill_every: float
    redis_down_at: float
    redis_down_for: float
    provider_5xx_at: float
    provider_5xx_for: float
    settle_timeout: float
    customers: int = 40


SHORT = Plan(40, 30, 4, 12, 2, 22, 4, 45)
FULL = Plan(240, 60, 5, 60, 3, 120, 10, 120)


@dataclass
class Tally:
    """What the driver saw from the outside."""

    inbound_accepted: set[str] = field(default_factory=set)  # MessageSids answered 200
    outbound_accepted: dict[str, str] = field(default_factory=dict)  # message id -> body
    gave_up: int = 0
    retries: collections.Counter = field(default_factory=collections.Counter)
    kills: int = 0


class RedisProcess:
    """The bench's own redis-server with AOF (appendfsync always), restartable over its data."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tl-chaos-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("chaos: redis-server is not installed")
        self.process = subprocess.Popen(
            [
                *(binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
                *("--logfile", str(self.dir / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("chaos: redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # a crash: only what the AOF holds survives
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_config(redis_url: str, gateway_port: int, simulator_port: int) -> Config:
    prefix = "chaos-" + uuid.uuid4().hex[:6]
    return Config(
        redis_url=redis_url,
        public_url=f"http://127.0.0.1:{gateway_port}",
        api_keys=[API_KEY],
        shards=8,
        key_prefix=prefix,
        simulator=True,
        simulator_port=simulator_port,
        ray_namespace=prefix,
        twilio=TwilioConfig(
            account_sid=SIMULATOR_ACCOUNT_SID,
            auth_token=SIMULATOR_AUTH_TOKEN,
            base_url=f"http://127.0.0.1:{simulator_port}",
        ),
    )


async def _retrying(tally: Tally, kind: str, attempt_once, budget: float = 90.0) -> bool:
    """Repeat one logical request (same id/key) until it is accepted or refused for good."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        try:
            status, retry_after = await attempt_once()
        except (aiohttp.ClientError, TimeoutError):
            status, retry_after = 0, 0.5
        if 200 <= status < 300:
            return True
        if status and status < 500 and status not in (409, 429):
            log.error("%s refused with %s", kind, status)
            return False
        tally.retries[kind] += 1
        await asyncio.sleep(min(retry_after, 1.0) * random.uniform(0.5, 1.0))
    tally.gave_up += 1
    return False


def _retry_after(response: aiohttp.ClientResponse) -> float:
    try:
        return float(response.headers.get("Retry-After", "0.5"))
    except ValueError:
        return 0.5


async def inbound(http: aiohttp.ClientSession, config: Config, phone: str, n: int, tally: Tally) -> None:
    sid = "SM" + uuid.uuid4().hex
    url = config.public_url + "/webhooks/twilio/sms"
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": config.twilio.account_sid,
        "From": phone,
        "To": config.twilio.from_number,
        "Body": f"chaos-in-{n}",
        "NumMedia": "0",
    }
    signature = compute_signature(config.twilio.auth_token, url, form.items())

    async def once() -> tuple[int, float]:
        async with http.post(url, data=form, headers={"X-Twilio-Signature": signature}) as response:
            await response.read()
            return response.status, _retry_after(response)

    if await _retrying(tally, "inbound", once):
        tally.inbound_accepted.add(sid)


async def outbound(http: aiohttp.ClientSession, config: Config, phone: str, n: int, tally: Tally) -> None:
    body = f"chaos-out-{n}"
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": f"chaos-{n}-{uuid.uuid4().hex}"}
    accepted: dict[str, str] = {}

    async def once() -> tuple[int, float]:
        async with http.post(
            config.public_url + "/v1/messages", json={"to": {"phone": phone}, "body": body}, headers=headers
        ) as response:
            payload = await response.read()
            if response.status == 202:
                accepted["id"] = msgspec.json.decode(payload)["id"]
            return response.status, _retry_after(response)

    if await _retrying(tally, "outbound", once):
        tally.outbound_accepted[accepted["id"]] = body


async def drive_load(http: aiohttp.ClientSession, config: Config, plan: Plan, tally: Tally) -> None:
    phones = [f"+1415555{1000 + i:04d}" for i in range(plan.customers)]
    tasks: set[asyncio.Task] = set()
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < plan.duration:
        n += 1
        phone = random.choice(phones)
        job = inbound if n % 2 else outbound
        task = asyncio.create_task(job(http, config, phone, n, tally))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(1 / plan.rate)
    if tasks:
        await asyncio.gather(*tasks)


async def kill_actors(actors: list, plan: Plan, tally: Tally) -> None:
    start = time.monotonic()
    while time.monotonic() - start < plan.duration:
        await asyncio.sleep(plan.kill_every)
        victim = random.randrange(len(actors))
        ray.kill(actors[victim], no_restart=False)  # Ray restarts it; it resumes from Redis
        tally.kills += 1
        log.info("killed shard actor %s", victim)


async def restart_redis(redis_server: RedisProcess, plan: Plan) -> None:
    await asyncio.sleep(plan.redis_down_at)
    log.info("killing Redis")
    redis_server.kill()
    await asyncio.sleep(plan.redis_down_for)
    await asyncio.to_thread(redis_server.start)
    log.info("Redis restarted from its AOF")


async def provider_outage(simulator: web.Application, plan: Plan) -> None:
    await asyncio.sleep(plan.provider_5xx_at)
    outage = FailureScript(error_code=20500, count=10**9, http_status=503)
    state = simulator[STATE]
    state.failures.append(outage)
    log.info("simulator answers 503")
    await asyncio.sleep(plan.provider_5xx_for)
    # The simulator counts a script down as it uses it, so match by code, not identity.
    state.failures[:] = [script for script in state.failures if script.error_code != outage.error_code]
    log.info("simulator healthy again")


async def message_records(redis: Redis, keys: Keys, ids: list[str]) -> dict[str, object]:
    records = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        blobs = await redis.mget([keys.message(mid) for mid in chunk])
        records.update({mid: decode_message(blob) for mid, blob in zip(chunk, blobs, strict=True) if blob})
    return records


async def settle(redis: Redis, keys: Keys, tally: Tally, plan: Plan) -> None:
    """Wait until every accepted send has reached a final status (or the timeout)."""
    deadline = time.monotonic() + plan.settle_timeout
    ids = list(tally.outbound_accepted)
    while time.monotonic() < deadline:
        records = await message_records(redis, keys, ids)
        open_ = [r for r in records.values() if r.status not in FINAL and not r.error_code]  # type: ignore[attr-defined]
        inbound_left = await _missing_inbound(redis, keys, tally)
        if len(records) == len(ids) and not open_ and not inbound_left:
            return
        await asyncio.sleep(1)


async def _missing_inbound(redis: Redis, keys: Keys, tally: Tally) -> set[str]:
    sids = sorted(tally.inbound_accepted)
    found = await redis.mget([keys.provider_message("twilio", sid) for sid in sids]) if sids else []
    return {sid for sid, hit in zip(sids, found, strict=True) if not hit}


async def count(
    redis: Redis, keys: Keys, simulator: web.Application, tally: Tally, plan: Plan
) -> dict[str, int]:
    phones = [f"+1415555{1000 + i:04d}" for i in range(plan.customers)]
    records = await message_records(redis, keys, list(tally.outbound_accepted))
    missing_inbound = await _missing_inbound(redis, keys, tally)
    never_attempted = [
        mid
        for mid, record in records.items()
        if record.status is MessageStatus.ACCEPTED and not record.error_code  # type: ignore[attr-defined]
    ]
    for mid in never_attempted[:10]:
        record = records[mid]
        shard = int(record.customer_id.split("_")[1])  # type: ignore[attr-defined]
        marker = await redis.exists(keys.send_attempt(mid))
        pending = await redis.xpending(keys.outbox(shard), "shard")
        log.error(
            "never attempted: %s shard %s attempt-marker %s outbox len %s pending %s",
            mid,
            shard,
            marker,
            await redis.xlen(keys.outbox(shard)),
            pending.get("pending"),
        )
    thread_bodies: collections.Counter[str] = collections.Counter()
    for phone in phones:
        customer = await redis.get(keys.identity(phone_identifier(phone)))
        if not customer:
            continue
        events = await redis.xrange(keys.thread(customer.decode()))
        logged = [decode_thread_event(fields[INGEST_FIELD]) for _, fields in events]
        ids = [e.message_id for e in logged if isinstance(e, MessageLogged)]
        for record in (await message_records(redis, keys, ids)).values():
            thread_bodies[record.body] += 1  # type: ignore[attr-defined]
    sent_bodies = collections.Counter(
        m["body"] for m in simulator[STATE].sent if m["body"].startswith("chaos-")
    )
    accepted = len(tally.inbound_accepted) + len(tally.outbound_accepted)
    persisted = len(tally.inbound_accepted) - len(missing_inbound) + len(records)
    delivered = sum(1 for r in records.values() if r.status in (MessageStatus.DELIVERED, MessageStatus.READ))  # type: ignore[attr-defined]
    failed = sum(1 for r in records.values() if r.status in (MessageStatus.FAILED, MessageStatus.UNDELIVERED))  # type: ignore[attr-defined]
    unknown = sum(1 for r in records.values() if r.error_code == "outcome_unknown")  # type: ignore[attr-defined]
    inbound_in_threads = sum(1 for body in thread_bodies if body.startswith("chaos-in-"))
    return {
        "accepted": accepted,
        "accepted_inbound": len(tally.inbound_accepted),
        "accepted_outbound": len(tally.outbound_accepted),
        "persisted": persisted,
        "inbound_in_threads": inbound_in_threads,
        "sent": len(sent_bodies),
        "delivered": delivered,
        "failed_final": failed,
        "outcome_unknown": unknown,
        "lost": len(missing_inbound) + (len(tally.outbound_accepted) - len(records)) + len(never_attempted),
        "duplicates": sum(c - 1 for c in thread_bodies.values() if c > 1)
        + sum(c - 1 for c in sent_bodies.values() if c > 1),
        "gave_up": tally.gave_up,
        "retries": sum(tally.retries.values()),
        "actor_kills": tally.kills,
    }


async def run(plan: Plan) -> int:
    redis_server = RedisProcess()
    redis_server.start()
    gateway_port, simulator_port = free_port(), free_port()
    config = bench_config(redis_server.url, gateway_port, simulator_port)
    keys = Keys(config.key_prefix)
    runners: list[web.AppRunner] = []
    try:
        connect_ray(config)
        actors = start_shard_actors(config, status_callbacks(config.public_url))
        await wait_until_ready(actors, timeout=120)
        simulator = create_simulator_app(
            SimulatorSettings(config.twilio.account_sid, config.twilio.auth_token, config.public_url)
        )
        for app, port in ((simulator, simulator_port), (create_app(config, actors), gateway_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        tally = Tally()
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(
                drive_load(http, config, plan, tally),
                kill_actors(actors, plan, tally),
                restart_redis(redis_server, plan),
                provider_outage(simulator, plan),
            )
        log.info("load done after %.0fs; settling", time.monotonic() - started)
        redis = Redis.from_url(redis_server.url)
        try:
            await settle(redis, keys, tally, plan)
            figures = await count(redis, keys, simulator, tally, plan)
        finally:
            await redis.aclose()
        figures["seconds"] = round(time.monotonic() - started)
        width = max(map(len, figures))
        for name, value in figures.items():
            print(f"{name:<{width}}  {value}")
        ok = figures["lost"] == 0 and figures["duplicates"] == 0
        print("chaos: OK" if ok else "chaos: FAILED (lost or duplicates above 0)")
        return 0 if ok else 1
    finally:
        for runner in reversed(runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        with contextlib.suppress(Exception):
            ray.shutdown()
        redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="the CI run: under two minutes")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("gateway.errors", "gateway.idempotency"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    random.seed(args.seed)
    raise SystemExit(asyncio.run(run(SHORT if args.short else FULL)))


if __name__ == "__main__":
    main()
