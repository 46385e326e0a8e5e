"""Inbound benchmark: signed Twilio SMS webhooks into Threadline, side by side with the bare floor.

    python -m bench.inbound            # or: make bench-inbound

Starts the bare floor (bench/floor.py) and then ``threadline serve`` (Redis on 127.0.0.1:6379,
a local Ray with the shard actors, the gateway) and drives each from a separate load process
(bench/loadgen.py): first closed-loop at the maximum rate, then open-loop at a fixed rate.
Then checks that every accepted message is in its customer's thread. Prints a table and a
final ``RESULT …`` line. Keys live under a unique prefix, deleted at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    REDIS_URL,
    BenchTimeout,
    Run,
    cpu_delta,
    cpu_per_message,
    cpu_snapshot,
    ensure_redis,
    machine,
    profiled,
    result_line,
    run_load,
    session_pids,
    sms_load_args,
    stream_length,
    thread_lengths,
    time_bound,
    top_frames,
    wait_drained,
    wait_port,
)
from bench.loadgen import LoadReport, phone_of
from channels.simulator.fixed_credentials import SIMULATOR_AUTH_TOKEN
from conversations.config import Config
from conversations.store import Keys
from gateway.embedded import free_port


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per load run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    p.add_argument("--rate", type=float, default=1000.0, help="the fixed open-loop rate (msg/s)")
    p.add_argument("--workers", type=int, default=1, help="gateway (and floor) processes")
    p.add_argument("--shards", type=int, default=0, help="Threadline shards (default: the config's)")
    p.add_argument("--phones", type=int, default=5000, help="distinct customers")
    p.add_argument("--skip-floor", action="store_true")
    p.add_argument("--profile", type=Path, help="py-spy the gateway and one actor into this directory")
    p.add_argument("--timeout", type=int, default=240, help="bound on the whole script (seconds)")
    return p


def load_options(args: argparse.Namespace) -> dict[str, object]:
    return {"warmup": args.warmup, "duration": args.duration, "phones": args.phones}


@dataclass
class Measured:
    """One target's two load runs, with the CPU its processes (and Redis) used for each."""

    at_max: LoadReport
    fixed: LoadReport
    cpu_max: dict[str, float]
    cpu_fixed: dict[str, float]
    drains: list[float]


def measure(
    port: int,
    auth_token: str,
    args: argparse.Namespace,
    leaders: list[int],
    settle: Callable[[], float] = lambda: 0.0,
    profile: dict[str, int] | None = None,
) -> Measured:
    """Closed-loop at max, then open-loop at ``--rate``; ``settle()`` waits for the work to finish."""
    timeout = args.warmup + args.duration + 60
    drains = []
    before = cpu_snapshot(leaders)
    with profiled(args.profile, profile or {}, args.warmup + args.duration):
        at_max = run_load(
            sms_load_args(port, "closed", auth_token, connections=args.connections, **load_options(args)),
            timeout,
        )
    drains.append(settle())
    middle = cpu_snapshot(leaders)
    fixed = run_load(
        sms_load_args(port, "open", auth_token, rate=args.rate, connections=128, **load_options(args)),
        timeout,
    )
    drains.append(settle())
    after = cpu_snapshot(leaders)
    return Measured(at_max, fixed, cpu_delta(before, middle), cpu_delta(middle, after), drains)


def run_floor(run: Run, args: argparse.Namespace, floor_prefix: str) -> tuple[Measured, int]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs = [
        run.start(
            f"floor-{i}",
            [
                *(sys.executable, "-m", "bench.floor", "--port", str(port), "--redis-url", REDIS_URL),
                *("--prefix", floor_prefix, "--auth-token", SIMULATOR_AUTH_TOKEN, "--public-url", url),
            ],
        )
        for i in range(args.workers)
    ]
    wait_port(procs[0], port)
    time.sleep(0.5 if args.workers > 1 else 0)  # let every worker bind before the load starts
    measured = measure(port, SIMULATOR_AUTH_TOKEN, args, [proc.pid for proc in procs])
    for proc in procs:
        proc.stop()
    return measured, stream_length(Keys(floor_prefix).ingest(0))


def row(name: str, m: Measured) -> str:
    at_max, fixed = m.at_max, m.fixed
    return (
        f"{name:<11} {at_max.rate:>9.0f} {at_max.p50_ms:>8.2f} {at_max.p99_ms:>8.2f} {at_max.p999_ms:>8.2f}"
        f"   {fixed.rate:>7.0f} {fixed.p50_ms:>8.2f} {fixed.p99_ms:>8.2f} {fixed.p999_ms:>8.2f}"
    )


def print_cpu(name: str, m: Measured) -> None:
    print(
        f"{name:<11} CPU at max: {cpu_per_message(m.cpu_max, m.at_max.ok)}; "
        f"load process {m.at_max.cpu_s / max(1, m.at_max.sent) * 1e6:.0f} µs/msg"
    )
    print(f"{'':<11} CPU at {args_rate_label(m)}: {cpu_per_message(m.cpu_fixed, m.fixed.ok)}")


def args_rate_label(m: Measured) -> str:
    return f"{m.fixed.target_rate:.0f}/s"


def main() -> None:
    args = parser().parse_args()
    time_bound(args.timeout)
    run = Run()
    ensure_redis(run)
    floor_prefix = f"{run.prefix}-floor"
    shards = args.shards or Config().shards
    keys = run.keys
    print(f"machine: {machine()}", flush=True)
    print(f"run: prefix={run.prefix} logs={run.log_dir}", flush=True)
    figures: dict[str, object] = {}
    try:
        floor: Measured | None = None
        if not args.skip_floor:
            print("floor: measuring", flush=True)
            floor, figures["floor_stored"] = run_floor(run, args, floor_prefix)

        print("threadline: starting (Ray + shard actors + gateway)", flush=True)
        port = free_port()
        started = time.monotonic()
        threadline = run.start_threadline(port, args.workers, args.shards or None)
        figures["startup_s"] = round(time.monotonic() - started, 1)
        actors = session_pids(threadline.pid, "ray::ShardActor")
        targets = {"gateway": threadline.pid, **({"actor": actors[0]} if actors else {})}
        print(f"threadline: measuring ({len(actors)} shard actor processes)", flush=True)
        tl = measure(
            port,
            run.simulator_credentials()[1],
            args,
            [threadline.pid],
            settle=lambda: wait_drained(keys, shards, timeout=60),
            profile=targets if args.profile else None,
        )

        accepted: Counter[str] = Counter(tl.at_max.ok_by_key) + Counter(tl.fixed.ok_by_key)
        phones = [phone_of(i, 0) for i in range(args.phones)]
        lengths = thread_lengths(keys, phones)
        in_threads = sum(lengths.values())
        mismatched = sum(1 for phone in phones if lengths[phone] != accepted.get(phone, 0))
        abandoned = tl.at_max.abandoned + tl.fixed.abandoned

        print()
        rate = f"@{args.rate:.0f}/s"
        print(
            f"{'':<11} {'max msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>8}"
            f"   {rate:>7} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>8}"
        )
        if floor:
            print(row("floor", floor))
        print(row("threadline", tl))
        applied_rate = tl.at_max.ok / (args.warmup + args.duration + tl.drains[0])
        print(
            f"threadline applied to threads: {applied_rate:.0f} msg/s over the max run, incl. "
            f"{tl.drains[0]:.2f}s for the shards to drain after the load stopped"
        )
        ratio = tl.at_max.rate / floor.at_max.rate if floor and floor.at_max.rate else 0.0
        if floor:
            print(f"threadline/floor throughput: {ratio:.2f}")
            print_cpu("floor", floor)
        print_cpu("threadline", tl)
        print(
            f"accepted (2xx): {sum(accepted.values())}; in threads: {in_threads}; "
            f"customers whose thread count differs: {mismatched}; abandoned requests: {abandoned}"
        )
        runs = (tl.at_max, tl.fixed)
        non_ok = {k: v for r in runs for k, v in r.statuses.items() if not k.startswith("2")}
        if non_ok or any(r.errors for r in runs):
            print(f"non-2xx answers: {non_ok}; connection errors: {sum(r.errors for r in runs)}")
        if args.profile:
            for name in targets:
                print(f"\npy-spy {name} (self time, top frames):")
                for share, frame in top_frames(args.profile / f"{name}.txt"):
                    print(f"  {share:5.1f}%  {frame}")
        figures.update(
            tl_max_rps=tl.at_max.rate,
            tl_max_p50_ms=tl.at_max.p50_ms,
            tl_max_p99_ms=tl.at_max.p99_ms,
            tl_max_p999_ms=tl.at_max.p999_ms,
            tl_applied_rps=applied_rate,
            tl_fixed_rps=tl.fixed.rate,
            tl_fixed_p50_ms=tl.fixed.p50_ms,
            tl_fixed_p99_ms=tl.fixed.p99_ms,
            tl_fixed_p999_ms=tl.fixed.p999_ms,
        )
        if floor:
            figures.update(
                floor_max_rps=floor.at_max.rate,
                floor_max_p50_ms=floor.at_max.p50_ms,
                floor_max_p99_ms=floor.at_max.p99_ms,
                floor_max_p999_ms=floor.at_max.p999_ms,
                floor_fixed_p50_ms=floor.fixed.p50_ms,
                floor_fixed_p99_ms=floor.fixed.p99_ms,
                floor_fixed_p999_ms=floor.fixed.p999_ms,
                ratio=round(ratio, 3),
            )
        figures.update(
            accepted=sum(accepted.values()),
            in_threads=in_threads,
            mismatched=mismatched,
            workers=args.workers,
            shards=shards,
            nproc=machine()["nproc"],
        )
    except BenchTimeout as exc:
        print(f"bench: {exc}", file=sys.stderr)
        figures["error"] = "timeout"
    finally:
        deleted = run.finish(run.prefix, floor_prefix)
        print(f"cleanup: deleted {deleted} keys under {run.prefix}", flush=True)
    print(result_line(**figures))
    if figures.get("error") or figures.get("mismatched"):
        sys.exit(1)
    run.remove_logs()


if __name__ == "__main__":
    main()
