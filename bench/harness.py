"""What both benchmark scripts share: processes started as a user would, Redis checks, output."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from redis import Redis

from bench.loadgen import LoadReport
from channels.simulator.fixed_credentials import SIMULATOR_ACCOUNT_SID
from conversations.models import Identifier, IdentifierKind
from conversations.store import Keys
from gateway.embedded import free_port, port_open, simulator_secrets

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEY = "tl_bench_" + uuid.uuid4().hex[:12]


def ensure_redis(run: Run) -> None:
    """Use the Redis on 127.0.0.1:6379 (or BENCH_REDIS_URL); start one there when none answers."""
    if "BENCH_REDIS_URL" in os.environ or port_open("127.0.0.1", 6379):
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit(
            "bench: no Redis on 127.0.0.1:6379 and no redis-server (run ./scripts/ensure-redis-server.sh)"
        )
    data = run.log_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--bind", "127.0.0.1", "--port", "6379", "--dir", str(data), "--save", ""]
    run.redis = run.start("redis", [*argv, "--appendonly", "yes", "--appendfsync", "everysec"])
    run.procs.remove(run.redis)  # stopped last, after the keys are deleted
    wait_port(run.redis, 6379)


class BenchTimeout(Exception):
    """The whole script ran past its time bound."""


def time_bound(seconds: int) -> None:
    """Abort the script (cleanly, through ``finally``) once ``seconds`` have passed."""

    def expire(signum, frame):
        raise BenchTimeout(f"benchmark exceeded its {seconds}s bound")

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "mem_gib": f"{mem_kib / 1024 / 1024:.1f}",
        "cpu": cpu,
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def result_line(**figures: object) -> str:
    """``RESULT name=value …`` for machines to read (floats: 2 decimals below 10, else 1)."""
    parts = []
    for name, value in figures.items():
        if isinstance(value, float):
            text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
        else:
            text = str(value)
        parts.append(f"{name}={text.replace(' ', '_')}")
    return "RESULT " + " ".join(parts)


# --- processes ----------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process in its own session, so that it and its children stop together."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (graceful: drains batches), then SIGKILL of its own process group."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # leftovers started by it (Ray workers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Run:
    """One benchmark run: its key prefix, its log directory, and what it started."""

    prefix: str = field(default_factory=lambda: f"tlbench-{uuid.uuid4().hex[:10]}")
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tlbench-")))
    procs: list[Proc] = field(default_factory=list)
    redis: Proc | None = None  # a Redis this run started (none answered on 6379)

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Proc:
        log_path = self.log_dir / f"{name}.log"
        popen = subprocess.Popen(
            argv,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def remove_logs(self) -> None:
        """After a clean run: its process logs are not worth keeping."""
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def finish(self, *prefixes: str) -> int:
        """Stop what the run started, delete its keys, stop a Redis it started; keys deleted."""
        self.stop_all()
        try:
            return self.delete_keys(*prefixes)
        finally:
            if self.redis is not None:
                self.redis.stop()

    def threadline_env(self, port: int, shards: int | None, extra: Mapping[str, str] | None = None) -> dict:
        env = {
            "THREADLINE_REDIS_URL": REDIS_URL,
            "THREADLINE_KEY_PREFIX": self.prefix,
            "THREADLINE_RAY_NAMESPACE": self.prefix,
            "THREADLINE_API_KEYS": API_KEY,
            "THREADLINE_RATE_LIMIT_PER_SECOND": "0",  # measure the pipeline, not the per-key limit
            "THREADLINE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "THREADLINE_DATA_DIR": str(self.log_dir / "data"),
            "THREADLINE_SIMULATOR_PORT": str(free_port()),
            # The simulator's SMTP sink too: a fixed port collides with any other stack on the machine.
            "THREADLINE_SIMULATOR_SMTP_PORT": str(free_port()),
        }
        if shards:
            env["THREADLINE_SHARDS"] = str(shards)
        env.update(extra or {})
        return env

    def simulator_credentials(self) -> tuple[str, str]:
        """The Twilio account and token the run's ``serve`` and ``simulator`` share (its data dir)."""
        return SIMULATOR_ACCOUNT_SID, simulator_secrets(self.log_dir / "data").twilio_auth_token

    def start_threadline(
        self, port: int, workers: int, shards: int | None, extra_env: Mapping[str, str] | None = None
    ) -> Proc:
        """``threadline serve`` as a user starts it, and wait until /readyz says ready."""
        argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        proc = self.start("threadline", argv, self.threadline_env(port, shards, extra_env))
        wait_ready(proc, f"http://127.0.0.1:{port}/readyz", timeout=150)
        return proc

    def delete_keys(self, *prefixes: str) -> int:
        """SCAN + UNLINK everything under this run's prefixes (never FLUSHALL)."""
        deleted = 0
        with Redis.from_url(REDIS_URL) as redis:
            for prefix in prefixes or (self.prefix,):
                batch: list[bytes] = []
                for key in redis.scan_iter(match=f"{prefix}:*", count=5000):
                    batch.append(key)
                    if len(batch) >= 5000:
                        deleted += redis.unlink(*batch)
                        batch.clear()
                if batch:
                    deleted += redis.unlink(*batch)
        return deleted


def wait_ready(proc: Proc, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"{proc.name} not ready after {timeout}s:\n{proc.tail()}")


def wait_port(proc: Proc, port: int, timeout: float = 20) -> None:
    """Wait until something accepts connections on ``port``."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} does not listen on {port}:\n{proc.tail()}")


def run_load(argv: list[str], timeout: float) -> LoadReport:
    """One load run in its own process; its report comes back as a JSON file."""
    with tempfile.NamedTemporaryFile(prefix="tlbench-load-", suffix=".json") as out:
        done = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", *argv, "--out", out.name],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        report = Path(out.name).read_bytes()
    if done.returncode != 0 or not report:
        raise RuntimeError(
            f"loadgen failed ({done.returncode}): {done.stderr.decode(errors='replace')[-3000:]}"
        )
    return msgspec.json.decode(report, type=LoadReport)


def sms_load_args(port: int, mode: str, auth_token: str, **options: object) -> list[str]:
    """Loadgen arguments for signed inbound-SMS webhooks to 127.0.0.1:``port``."""
    url = f"http://127.0.0.1:{port}/webhooks/twilio/sms"
    argv = ["--target", url, "--kind", "sms", "--sign-url", url, "--auth-token", auth_token]
    argv += ["--mode", mode]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


# --- Redis checks -------------------------------------------------------------------------


def stream_backlog(keys: Keys, shards: int, outbox: bool = False) -> int:
    """Entries still in the shards' ingest (and outbox) streams: applied entries are deleted."""
    with Redis.from_url(REDIS_URL) as redis:
        pipe = redis.pipeline(transaction=False)
        for shard in range(shards):
            pipe.xlen(keys.ingest(shard))
            if outbox:
                pipe.xlen(keys.outbox(shard))
        return sum(pipe.execute())


def wait_drained(keys: Keys, shards: int, timeout: float, outbox: bool = False) -> float:
    """Seconds until every shard has applied its backlog (raises after ``timeout``)."""
    started = time.monotonic()
    while stream_backlog(keys, shards, outbox):
        if time.monotonic() - started > timeout:
            raise BenchTimeout(f"shards still had a backlog after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


def thread_lengths(keys: Keys, phones: list[str]) -> dict[str, int]:
    """Entries in each phone's thread (0 when no customer exists for it)."""
    lengths: dict[str, int] = {}
    with Redis.from_url(REDIS_URL) as redis:
        for start in range(0, len(phones), 2000):
            chunk = phones[start : start + 2000]
            ids = redis.mget([keys.identity(Identifier(IdentifierKind.PHONE, p)) for p in chunk])
            pipe = redis.pipeline(transaction=False)
            for customer_id in ids:
                if customer_id:
                    pipe.xlen(keys.thread(customer_id.decode()))
            found = iter(pipe.execute())
            for phone, customer_id in zip(chunk, ids, strict=True):
                lengths[phone] = next(found) if customer_id else 0
    return lengths


def stream_length(key: str) -> int:
    with Redis.from_url(REDIS_URL) as redis:
        return int(redis.xlen(key))


# --- CPU accounting ---------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _role(pid: int, leader: int, cmdline: str) -> str:
    if cmdline.startswith("ray::ShardActor"):
        return "actors"
    if "gateway.cli simulator" in cmdline:
        return "simulator"
    if pid == leader or any(name in cmdline for name in ("gateway.cli", "bench.floor", "multiprocessing")):
        return "gateway"
    return "ray"


def cpu_snapshot(leaders: list[int]) -> dict[str, float]:
    """CPU seconds used so far by the processes of these sessions, by role, plus Redis."""
    totals: dict[str, float] = {"gateway": 0.0, "actors": 0.0, "ray": 0.0, "simulator": 0.0}
    wanted = set(leaders)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            after_name = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            session = int(after_name[3])
            if session not in wanted:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            used = (int(after_name[11]) + int(after_name[12])) / _TICK  # utime + stime
            totals[_role(int(entry.name), session, cmdline)] += used
    with Redis.from_url(REDIS_URL) as redis:
        info = redis.info("cpu")
    totals["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return totals


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: max(0.0, after[role] - before.get(role, 0.0)) for role in after}


def cpu_per_message(delta: dict[str, float], messages: int) -> str:
    """``gateway 120 µs + actors 80 µs …`` per message."""
    if not messages:
        return "n/a"
    parts = [f"{role} {seconds / messages * 1e6:.0f}" for role, seconds in delta.items() if seconds > 0]
    total = sum(delta.values()) / messages * 1e6
    return " + ".join(parts) + f" = {total:.0f} µs/msg"


# --- profiling ----------------------------------------------------------------------------


def session_pids(session_leader: int, title: str) -> list[int]:
    """Processes of our own session (the one ``Run.start`` made) whose command starts with ``title``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields_after_name = stat.rsplit(")", 1)[1].split()
            if int(fields_after_name[3]) != session_leader:  # field 6: session id
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmdline.startswith(title):
                found.append(int(entry.name))
    return sorted(found)


@contextlib.contextmanager
def profiled(out_dir: Path | None, targets: dict[str, int], seconds: float) -> Iterator[None]:
    """``py-spy record`` on each target pid for ``seconds`` while the body runs (if out_dir)."""
    if out_dir is None or not targets:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    recorders = []
    for name, pid in targets.items():
        argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"]
        argv += ["--format", "raw", "--output", str(out_dir / f"{name}.txt"), "--nonblocking"]
        recorders.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        yield
    finally:
        for recorder in recorders:
            with contextlib.suppress(subprocess.TimeoutExpired):
                recorder.wait(seconds + 15)


def top_frames(raw_profile: Path, count: int = 15) -> list[tuple[float, str]]:
    """Self-time share of the hottest functions in a ``py-spy record --format raw`` file."""
    totals: dict[str, int] = {}
    overall = 0
    with contextlib.suppress(OSError):
        for line in raw_profile.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            if not samples.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            totals[leaf] = totals.get(leaf, 0) + int(samples)
            overall += int(samples)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
    return [(100.0 * n / overall, frame) for frame, n in ranked] if overall else []
