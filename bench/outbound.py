"""Outbound benchmark: POST /v1/messages at max rate through the shards to the provider simulator.

    python -m bench.outbound            # or: make bench-outbound   (--quick: 10,000 messages)

Starts the provider simulator in sink mode (``threadline simulator --sink``: it answers like
Twilio and posts no status callbacks) and ``threadline serve`` pointed at it, then:

1. a timed closed-loop run at the maximum rate: accepted/s, provider sends/s, and the time
   from the API's 202 to the provider call (p50/p99), per message; the API outruns the
   senders here, so that time is mostly queueing;
2. an open-loop run at a fixed ``--rate`` the senders keep up with: the same time, unqueued;
3. a run of ``--messages`` sends (default 100,000): time until the last reached the provider,
   and the count check: every accepted message reached the provider exactly once.

The 20% WhatsApp-failure -> SMS fallback mix of issue 9 waits for routing (see README).
Prints a final ``RESULT …`` line. Keys live under a unique prefix, deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bench.harness import (
    API_KEY,
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
    time_bound,
    top_frames,
    wait_drained,
    wait_port,
)
from bench.loadgen import LoadReport
from bench.loadgen import percentile as percentile_ms
from conversations.config import Config
from gateway.embedded import free_port


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds of the max-rate run")
    p.add_argument("--rate", type=float, default=200.0, help="the paced run's rate (msg/s)")
    p.add_argument("--paced-duration", type=float, default=5.0, help="seconds of the paced run")
    p.add_argument("--messages", type=int, help="messages in the count run (default 100,000; --quick 10,000)")
    p.add_argument("--quick", action="store_true", help="a short run: 3 s, 3 s and 10,000 messages")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="gateway processes")
    p.add_argument("--shards", type=int, default=0, help="Threadline shards (default: the config's)")
    p.add_argument("--phones", type=int, default=20_000, help="distinct customers, spread over the shards")
    p.add_argument("--profile", type=Path, help="py-spy the gateway and one actor into this directory")
    p.add_argument("--timeout", type=int, default=300, help="bound on the whole script (seconds)")
    return p


def api_load_args(port: int, mode: str = "closed", **options: object) -> list[str]:
    argv = ["--target", f"http://127.0.0.1:{port}/v1/messages", "--kind", "api", "--api-key", API_KEY]
    argv += ["--mode", mode, "--record-ids"]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def provider_receipts(simulator_url: str) -> list[tuple[str, float]]:
    """(our message id, arrival time) of every send the simulator received."""
    with urllib.request.urlopen(simulator_url + "/simulator/messages", timeout=120) as response:
        sent = json.loads(response.read())["messages"]
    receipts = []
    for message in sent:
        query = parse_qs(urlsplit(message.get("status_callback") or "").query)
        # The callback names the routing attempt (``<message id>-<n>``); count it for its message.
        attempt = query.get("mid", [""])[0]
        receipts.append(
            (attempt.rsplit("-", 1)[0] if "-" in attempt else attempt, float(message["received_at"]))
        )
    return receipts


def latencies(report: LoadReport, arrived: dict[str, float]) -> list[float]:
    """Seconds from the 202 to the provider call, for the messages that reached it."""
    return sorted(arrived[mid] - accepted_at for mid, accepted_at in report.accepted if mid in arrived)


def main() -> None:
    args = parser().parse_args()
    if args.quick:
        args.duration, args.paced_duration = min(args.duration, 3.0), min(args.paced_duration, 3.0)
    args.messages = args.messages or (10_000 if args.quick else 100_000)
    time_bound(args.timeout)
    run = Run()
    ensure_redis(run)
    shards = args.shards or Config().shards
    print(f"machine: {machine()}", flush=True)
    print(f"run: prefix={run.prefix} logs={run.log_dir}", flush=True)
    figures: dict[str, object] = {}
    failed = False
    try:
        port, sim_port = free_port(), free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        account_sid, auth_token = run.simulator_credentials()
        simulator = run.start(
            "simulator",
            [sys.executable, "-m", "gateway.cli", "simulator", "--sink", "--port", str(sim_port)],
            run.threadline_env(port, None),
        )
        wait_port(simulator, sim_port)
        print("threadline: starting (Ray + shard actors + gateway), provider = simulator in sink mode")
        started = time.monotonic()
        threadline = run.start_threadline(
            port,
            args.workers,
            args.shards or None,
            {
                "THREADLINE_SIMULATOR": "false",
                "THREADLINE_TWILIO_ACCOUNT_SID": account_sid,
                "THREADLINE_TWILIO_AUTH_TOKEN": auth_token,
                "THREADLINE_TWILIO_BASE_URL": sim_url,
            },
        )
        figures["startup_s"] = round(time.monotonic() - started, 1)
        actors = session_pids(threadline.pid, "ray::ShardActor")
        leaders = [threadline.pid, simulator.pid]
        print(
            f"threadline: max-rate run, {args.duration:.0f}s ({len(actors)} shard actor processes)",
            flush=True,
        )

        targets = {"gateway": threadline.pid, **({"actor": actors[0]} if actors else {})}
        before = cpu_snapshot(leaders)
        with profiled(args.profile, targets if args.profile else {}, args.duration):
            at_max = run_load(
                api_load_args(
                    port,
                    connections=args.connections,
                    duration=args.duration,
                    warmup=0,
                    phones=args.phones,
                ),
                args.duration + 60,
            )
        drain_max = wait_drained(run.keys, shards, timeout=120, outbox=True)
        cpu_max = cpu_delta(before, cpu_snapshot(leaders))

        print(f"threadline: paced run, {args.rate:.0f} msg/s for {args.paced_duration:.0f}s", flush=True)
        paced = run_load(
            api_load_args(
                port,
                "open",
                rate=args.rate,
                connections=64,
                duration=args.paced_duration,
                warmup=0,
                phones=args.phones,
            ),
            args.paced_duration + 60,
        )
        wait_drained(run.keys, shards, timeout=60, outbox=True)

        print(f"threadline: count run, {args.messages} messages", flush=True)
        counted = run_load(
            api_load_args(
                port,
                connections=args.connections,
                duration=args.timeout,
                warmup=0,
                count=args.messages,
                phones=args.phones,
            ),
            args.timeout,
        )
        drain_count = wait_drained(run.keys, shards, timeout=120, outbox=True)

        receipts = provider_receipts(sim_url)
        arrivals = Counter(mid for mid, _ in receipts)
        arrived = dict(receipts)
        max_ids = {mid for mid, _ in at_max.accepted}
        paced_ids = {mid for mid, _ in paced.accepted}
        count_ids = {mid for mid, _ in counted.accepted}
        accepted_ids = max_ids | paced_ids | count_ids

        max_latency = latencies(at_max, arrived)
        paced_latency = latencies(paced, arrived)
        max_arrivals = sorted(arrived[mid] for mid in max_ids if mid in arrived)
        send_rate = (
            len(max_arrivals) / (max_arrivals[-1] - at_max.started_at) if len(max_arrivals) > 1 else 0.0
        )
        count_arrivals = [arrived[mid] for mid in count_ids if mid in arrived]
        all_sent_s = (max(count_arrivals) - counted.started_at) if count_arrivals else 0.0
        lost = sum(1 for mid in count_ids if mid not in arrivals)
        doubled = sum(1 for mid in count_ids if arrivals[mid] > 1)
        unknown = sum(n for mid, n in arrivals.items() if mid not in accepted_ids)
        count_latency = latencies(counted, arrived)

        print()
        print(
            f"max-rate run ({args.duration:.0f}s, {args.connections} connections): "
            f"accepted {at_max.ok / at_max.elapsed:.0f}/s (API p50 {at_max.p50_ms:.1f} ms, "
            f"p99 {at_max.p99_ms:.1f} ms); provider sends {send_rate:.0f}/s; "
            f"202 -> provider call p50 {percentile_ms(max_latency, 0.5):.1f} ms, "
            f"p99 {percentile_ms(max_latency, 0.99):.1f} ms; drained {drain_max:.1f}s after the load"
        )
        print(f"  CPU: {cpu_per_message(cpu_max, at_max.ok)}")
        print(
            f"paced run ({args.rate:.0f}/s, open loop): API p50 {paced.p50_ms:.1f} ms, p99 {paced.p99_ms:.1f} ms; "
            f"202 -> provider call p50 {percentile_ms(paced_latency, 0.5):.1f} ms, "
            f"p99 {percentile_ms(paced_latency, 0.99):.1f} ms, p99.9 {percentile_ms(paced_latency, 0.999):.1f} ms"
        )
        print(
            f"count run: {counted.ok} accepted of {counted.sent} in {counted.elapsed:.1f}s "
            f"({counted.ok / counted.elapsed:.0f}/s); all at the provider {all_sent_s:.1f}s after the "
            f"first request ({len(count_arrivals) / all_sent_s if all_sent_s else 0:.0f} sends/s); "
            f"202 -> provider p99 {percentile_ms(count_latency, 0.99):.0f} ms"
        )
        print(
            f"count check: accepted {len(count_ids)}, reached the provider {len(count_arrivals)}, "
            f"lost {lost}, doubled {doubled}, sends nobody accepted {unknown}"
        )
        non_ok = {
            k: v for r in (at_max, paced, counted) for k, v in r.statuses.items() if not k.startswith("2")
        }
        if non_ok or at_max.errors or counted.errors:
            print(f"non-2xx answers: {non_ok}; connection errors: {at_max.errors + counted.errors}")
        if args.profile:
            for name in targets:
                print(f"\npy-spy {name} (self time, top frames):")
                for share, frame in top_frames(args.profile / f"{name}.txt"):
                    print(f"  {share:5.1f}%  {frame}")
        failed = bool(lost or doubled or unknown or counted.ok != args.messages)
        figures.update(
            accept_rps=at_max.ok / at_max.elapsed,
            api_p99_ms=at_max.p99_ms,
            sends_per_s=send_rate,
            accept_to_provider_p50_ms=percentile_ms(max_latency, 0.5),
            accept_to_provider_p99_ms=percentile_ms(max_latency, 0.99),
            paced_rate=args.rate,
            paced_accept_to_provider_p50_ms=percentile_ms(paced_latency, 0.5),
            paced_accept_to_provider_p99_ms=percentile_ms(paced_latency, 0.99),
            messages=args.messages,
            accepted=len(count_ids),
            at_provider=len(count_arrivals),
            lost=lost,
            doubled=doubled,
            unexpected=unknown,
            all_sent_s=all_sent_s,
            drain_s=drain_count,
            workers=args.workers,
            shards=shards,
            nproc=machine()["nproc"],
        )
    except BenchTimeout as exc:
        print(f"bench: {exc}", file=sys.stderr)
        figures["error"] = "timeout"
        failed = True
    finally:
        deleted = run.finish()
        print(f"cleanup: deleted {deleted} keys under {run.prefix}", flush=True)
    print(result_line(**figures))
    if failed:
        sys.exit(1)
    run.remove_logs()


if __name__ == "__main__":
    main()
