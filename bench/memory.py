"""Memory benchmark: Redis bytes per customer, and what the default stack's processes hold at idle.

    python -m bench.memory                 # 2,000 customers; --customers 100000 for the issue's run

Starts ``threadline serve`` as a user would and creates synthetic customers through the real
paths: ``PUT /v1/customers/{external_id}`` (phone, email, attributes), ``PUT …/preferences``,
then ``--entries`` signed inbound SMS webhooks each (thread entries). Once the shards have
applied everything, sums ``MEMORY USAGE`` (every nested value sampled) over every key of the
run by kind, and reads the resident and proportional set size of every process of the stack.
Prints a table and a final ``RESULT …`` line. Keys live under a unique prefix, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from redis import Redis

from bench.harness import (
    API_KEY,
    REDIS_URL,
    BenchTimeout,
    Run,
    ensure_redis,
    machine,
    result_line,
    time_bound,
    wait_drained,
)
from channels.twilio_signature import compute_signature
from conversations.config import SIMULATOR_AUTH_TOKEN, Config
from gateway.embedded import free_port

# Kinds of key (the part after the prefix) that belong to one customer, apart from the thread.
PROFILE_KINDS = ("cust", "idx", "prefs", "consent", "conv", "engage")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--entries", type=int, default=10, help="inbound messages (thread entries) per customer")
    p.add_argument("--shards", type=int, default=0, help="Threadline shards (default: the config's)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--timeout", type=int, default=900, help="bound on the whole script (seconds)")
    return p


def _phone(index: int) -> str:
    return f"+1628{index % 10_000_000:07d}"


async def _create(base: str, customers: int, entries: int, concurrency: int) -> int:
    """Customers with a profile, preferences and ``entries`` inbound SMS each; returns failures."""
    failures = 0
    webhook = f"{base}/webhooks/twilio/sms"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(customers):
        queue.put_nowait(index)

    async def one(http: aiohttp.ClientSession, index: int) -> None:
        nonlocal failures
        phone = _phone(index)
        profile = {
            "identifiers": {"phone": phone, "email": f"customer{index}@example.com"},
            "attributes": {
                "name": f"Customer {index}",
                "timezone": "Europe/London",
                "lifecycle_stage": "paying",
                "custom": {"plan": "pro", "seats": index % 50},
            },
        }
        async with http.put(f"{base}/v1/customers/ext-{index}", json=profile, headers=auth) as response:
            body = await response.json()
            if response.status not in (200, 201):
                failures += 1
                return
        preferences = {"preferences": {"marketing": {"order": ["email", "sms"], "opted_out": ["whatsapp"]}}}
        url = f"{base}/v1/customers/{body['customer']['id']}/preferences"
        async with http.put(url, json=preferences, headers=auth) as response:
            failures += response.status != 200
        for n in range(entries):
            sid = f"SMmem{index:08d}{n:04d}"
            form = [("MessageSid", sid), ("From", phone), ("To", "+15005550006"), ("Body", f"Message {n}")]
            form += [("NumMedia", "0"), ("AccountSid", "AC" + "0" * 32)]
            signature = compute_signature(SIMULATOR_AUTH_TOKEN, webhook, form)
            headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
            async with http.post(webhook, data=urlencode(form), headers=headers) as response:
                failures += response.status != 200

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            await one(http, queue.get_nowait())

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return failures


def redis_bytes(prefix: str) -> tuple[Counter[str], Counter[str]]:
    """``MEMORY USAGE … SAMPLES 0`` and key count of every key under ``prefix``, by kind."""
    used: Counter[str] = Counter()
    count: Counter[str] = Counter()
    with Redis.from_url(REDIS_URL) as redis:
        batch: list[bytes] = []

        def measure() -> None:
            pipe = redis.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key, samples=0)
            for key, size in zip(batch, pipe.execute(), strict=True):
                kind = key.decode()[len(prefix) + 1 :].split(":", 1)[0]
                if kind.startswith("{s"):  # shard keys: ingest, dedupe, … under {sN}
                    kind = "shard:" + key.decode().split(":")[2]
                used[kind] += size or 0
                count[kind] += 1
            batch.clear()

        for key in redis.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 2000:
                measure()
        if batch:
            measure()
    return used, count


def _status_kib(pid: int, field: str, path: str) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def stack_memory(session: int) -> list[tuple[str, int, int]]:
    """(command, RSS KiB, PSS KiB) of every process of the stack's session."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) != session:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            pid = int(entry.name)
            rss = _status_kib(pid, "VmRSS", "status")
            pss = _status_kib(pid, "Pss", "smaps_rollup")
            found.append((cmdline[:60].strip(), rss, pss))
    return sorted(found, key=lambda row: -row[1])


def main() -> None:
    args = parser().parse_args()
    time_bound(args.timeout)
    run = Run()
    ensure_redis(run)
    shards = args.shards or Config().shards
    print(f"machine: {machine()}", flush=True)
    figures: dict[str, object] = {}
    try:
        port = free_port()
        threadline = run.start_threadline(port, 1, args.shards or None)
        started = time.monotonic()
        failures = asyncio.run(
            _create(f"http://127.0.0.1:{port}", args.customers, args.entries, args.concurrency)
        )
        wait_drained(run.keys, shards, timeout=120)
        created_s = time.monotonic() - started
        used, count = redis_bytes(run.prefix)
        time.sleep(5)  # idle: nothing in flight
        processes = stack_memory(threadline.pid)

        per = args.customers
        print(f"\n{args.customers} customers, {args.entries} thread entries each, in {created_s:.1f}s")
        print(f"{'kind':<22} {'keys':>9} {'bytes/customer':>15}")
        for kind, size in sorted(used.items(), key=lambda kv: -kv[1]):
            print(f"{kind:<22} {count[kind]:>9} {size / per:>15.0f}")
        profile = sum(used[k] for k in PROFILE_KINDS)
        print(f"profile + identity keys ({', '.join(PROFILE_KINDS)}): {profile / per:.0f} bytes/customer")
        print(
            f"thread: {used['thread'] / per:.0f} bytes/customer ({used['thread'] / per / args.entries:.0f} per entry)"
        )
        print(f"\nidle processes of the stack ({shards} shards):")
        for command, rss, pss in processes:
            print(f"  RSS {rss / 1024:7.1f} MiB  PSS {pss / 1024:7.1f} MiB  {command}")
        rss_total = sum(rss for _, rss, _ in processes) / 1024
        pss_total = sum(pss for _, _, pss in processes) / 1024
        print(f"  total RSS {rss_total:.0f} MiB, PSS {pss_total:.0f} MiB ({len(processes)} processes)")
        figures.update(
            customers=args.customers,
            entries=args.entries,
            failures=failures,
            profile_bytes_per_customer=round(profile / per),
            thread_bytes_per_customer=round(used["thread"] / per),
            total_bytes_per_customer=round(sum(used.values()) / per),
            idle_rss_mib=round(rss_total),
            idle_pss_mib=round(pss_total),
            processes=len(processes),
            shards=shards,
        )
    except BenchTimeout as exc:
        print(f"bench: {exc}", file=sys.stderr)
        figures["error"] = "timeout"
    finally:
        deleted = run.finish(run.prefix)
        print(f"cleanup: deleted {deleted} keys under {run.prefix}", flush=True)
    print(result_line(**figures))
    if figures.get("error") or figures.get("failures"):
        sys.exit(1)
    run.remove_logs()


if __name__ == "__main__":
    main()
