"""The load process: signed Twilio SMS webhooks or API sends over raw keep-alive HTTP/1.1.

Runs in its own process so that its CPU shows up apart from the server's. It speaks just
enough HTTP/1.1 (one request in flight per connection, Content-Length bodies) to cost a few
microseconds per request; a full client library would cost ~10x more and steal that CPU from
the server on a 2-core machine. Two modes:

- ``closed``: ``--connections`` workers, each sends its next request when the previous
  answered; measures the maximum throughput.
- ``open``: requests are *scheduled* at a fixed ``--rate`` whatever the server does, and
  latency runs from the scheduled time (no coordinated omission).

Writes one JSON document (``LoadReport``) to ``--out`` or stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from time import perf_counter as clock
from urllib.parse import quote, urlsplit

import msgspec

GRACE_SECONDS = 10.0


class LoadReport(msgspec.Struct):
    """What one load run saw, as the client saw it."""

    mode: str
    target_rate: float
    connections: int
    duration: float
    started_at: float  # wall clock, when the first request went out
    elapsed: float  # seconds from the first request to the last answer
    sent: int
    ok: int
    rate: float  # 2xx answers completed inside the measured window, per second
    statuses: dict[str, int]
    errors: int
    abandoned: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    cpu_s: float  # CPU the load process itself used
    ok_by_key: dict[str, int] = msgspec.field(default_factory=dict)
    accepted: list[tuple[str, float]] = msgspec.field(default_factory=list)


# --- requests ---------------------------------------------------------------------------


def phone_of(index: int, base: int) -> str:
    """A valid US number (415 area code); ``base`` keeps runs apart."""
    return f"+1415{(base + index) % 10_000_000:07d}"


class SmsRequests:
    """Signed Twilio inbound-SMS webhooks, each with a fresh MessageSid."""

    def __init__(self, host: str, path: str, sign_url: str, auth_token: str, phones: list[str]) -> None:
        self._phones = phones
        self._key = auth_token.encode()
        self._run = os.urandom(6).hex()
        self._count = 0
        # Every field but the sid and the sender is fixed, so the form and the signed string
        # are templates; Twilio's payload (tests/support/stack.py) in Twilio's field order.
        fields = [
            ("ToCountry", "US"),
            ("ToState", "CA"),
            ("SmsMessageSid", "{sid}"),
            ("NumMedia", "0"),
            ("ToCity", ""),
            ("FromZip", ""),
            ("SmsSid", "{sid}"),
            ("FromState", "CA"),
            ("SmsStatus", "received"),
            ("FromCity", ""),
            ("Body", "Hello, where is my order? It was due yesterday."),
            ("FromCountry", "US"),
            ("To", "+15005550006"),
            ("ToZip", ""),
            ("NumSegments", "1"),
            ("MessageSid", "{sid}"),
            ("AccountSid", "AC" + "0" * 32),
            ("From", "{phone}"),
            ("ApiVersion", "2010-04-01"),
        ]
        self._body = "&".join(
            f"{name}={value if value.startswith('{') else quote(value, safe='')}" for name, value in fields
        )
        self._signed = sign_url + "".join(name + value for name, value in sorted(fields))
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        )

    def next(self) -> tuple[bytes, str]:
        """The next request's bytes and the key its acceptance is counted under (the phone)."""
        index = self._count
        self._count += 1
        sid = f"SM{self._run}{index:020x}"
        phone = self._phones[index % len(self._phones)]
        body = self._body.format(sid=sid, phone=quote(phone, safe="")).encode()
        mac = hmac.new(self._key, self._signed.format(sid=sid, phone=phone).encode(), hashlib.sha1)
        signature = base64.b64encode(mac.digest()).decode()
        head = f"{self._head}X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body, phone


class ApiSendRequests:
    """``POST /v1/messages`` to a spread of customers."""

    def __init__(self, host: str, api_key: str, phones: list[str]) -> None:
        self._phones = phones
        self._count = 0
        self._head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {api_key}\r\n"
        )

    def next(self) -> tuple[bytes, str]:
        index = self._count
        self._count += 1
        phone = self._phones[index % len(self._phones)]
        body = (
            b'{"to":{"phone":"%s"},"channel":"sms","body":"Your order %d has shipped.","type":"transactional"}'
            % (
                phone.encode(),
                index,
            )
        )
        head = f"{self._head}Content-Length: {len(body)}\r\n\r\n"
        return head.encode() + body, phone


# --- a minimal HTTP/1.1 keep-alive connection ---------------------------------------------


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        length = _content_length(head)
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self._buffer[end + 4 : total])
        del self._buffer[:total]
        self._waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self._transport is None or self.closed:
            raise ConnectionError("not connected")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None


def _content_length(head: bytes) -> int:
    at = head.find(b"content-length:")
    if at < 0:
        return 0
    line_end = head.find(b"\r\n", at)
    return int(head[at + 15 : line_end if line_end > 0 else len(head)])


# --- the run ----------------------------------------------------------------------------


@dataclass
class Recorder:
    """Latencies and outcomes; only what completes inside the window counts for the rate."""

    started_at: float = 0.0
    window_start: float = 0.0
    window_end: float = float("inf")
    latencies: list[float] = field(default_factory=list)
    in_window_ok: int = 0
    ok: int = 0
    sent: int = 0
    errors: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    ok_by_key: Counter[str] = field(default_factory=Counter)
    accepted: list[tuple[str, float]] = field(default_factory=list)
    record_ids: bool = False

    def done(self, started: float, finished: float, status: int, body: bytes, key: str) -> None:
        self.statuses[str(status)] += 1
        if 200 <= status < 300:
            self.ok += 1
            self.ok_by_key[key] += 1
            if self.record_ids:
                # the API answers {"id": "msg_…", …}; keep the id with the wall-clock accept time
                self.accepted.append((json.loads(body)["id"], time.time()))
        if self.window_start <= started and finished <= self.window_end:
            self.latencies.append(finished - started)
            if 200 <= status < 300:
                self.in_window_ok += 1


async def _connect(host: str, port: int, count: int) -> list[Connection]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(count):
        _, protocol = await loop.create_connection(Connection, host, port)
        connections.append(protocol)
    return connections


async def run_closed(args, requests, recorder: Recorder, host: str, port: int) -> None:
    connections = await _connect(host, port, args.connections)
    start = clock()
    recorder.window_start = start + args.warmup
    recorder.window_end = stop = recorder.window_start + args.duration

    limit = args.count or float("inf")
    recorder.started_at = time.time()

    async def worker(connection: Connection) -> None:
        while clock() < stop and recorder.sent < limit:
            data, key = requests.next()
            recorder.sent += 1
            started = clock()
            try:
                if connection.closed:  # the server closed it (e.g. after an error): open another
                    (connection,) = await _connect(host, port, 1)
                status, body = await connection.request(data)
            except (ConnectionError, OSError):
                recorder.errors += 1
                continue
            recorder.done(started, clock(), status, body, key)

    await asyncio.gather(*(worker(c) for c in connections))


async def run_open(args, requests, recorder: Recorder, host: str, port: int) -> None:
    connections = await _connect(host, port, args.connections)
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)
    start = clock()
    recorder.window_start = start + args.warmup
    recorder.window_end = stop = recorder.window_start + args.duration
    tasks: set[asyncio.Task] = set()
    recorder.started_at = time.time()

    async def one(scheduled: float, data: bytes, key: str) -> None:
        connection = await idle.get()
        try:
            if connection.closed:  # the server closed it (e.g. after an error): open another
                (connection,) = await _connect(host, port, 1)
            status, body = await connection.request(data)
        except (ConnectionError, OSError):
            recorder.errors += 1
            status, body = 0, b""
        else:
            recorder.done(scheduled, clock(), status, body, key)
        idle.put_nowait(connection)

    index = 0
    interval = 1.0 / args.rate
    while True:
        scheduled = start + index * interval
        if scheduled >= stop:
            break
        now = clock()
        if scheduled > now:
            await asyncio.sleep(scheduled - now)
        # launch everything that is due: a late wake-up must not lower the offered rate
        now = clock()
        while scheduled <= now and scheduled < stop:
            data, key = requests.next()
            recorder.sent += 1
            task = asyncio.create_task(one(scheduled, data, key))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            index += 1
            scheduled = start + index * interval
    # the window closes at ``stop``; answers still due are waited for but do not add to the rate
    recorder.window_end = float("inf")
    if tasks:
        await asyncio.wait(set(tasks), timeout=GRACE_SECONDS)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list, in ms (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[rank] * 1000


async def main_async(args: argparse.Namespace) -> LoadReport:
    parts = urlsplit(args.target)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    phones = [phone_of(i, args.phone_base) for i in range(args.phones)]
    netloc = f"{host}:{port}"
    requests: SmsRequests | ApiSendRequests
    if args.kind == "sms":
        requests = SmsRequests(netloc, parts.path or "/", args.sign_url, args.auth_token, phones)
    else:
        requests = ApiSendRequests(netloc, args.api_key, phones)
    recorder = Recorder(record_ids=args.record_ids)
    runner = run_closed if args.mode == "closed" else run_open
    try:
        await asyncio.wait_for(
            runner(args, requests, recorder, host, port), args.warmup + args.duration + GRACE_SECONDS + 5
        )
    except TimeoutError:
        pass
    latencies = sorted(recorder.latencies)
    answered = sum(recorder.statuses.values())
    return LoadReport(
        mode=args.mode,
        target_rate=args.rate if args.mode == "open" else 0.0,
        connections=args.connections,
        duration=args.duration,
        started_at=recorder.started_at,
        elapsed=time.time() - recorder.started_at,
        sent=recorder.sent,
        ok=recorder.ok,
        rate=recorder.in_window_ok / args.duration,
        statuses=dict(recorder.statuses),
        errors=recorder.errors,
        abandoned=recorder.sent - answered - recorder.errors,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        p999_ms=percentile(latencies, 0.999),
        max_ms=latencies[-1] * 1000 if latencies else 0.0,
        mean_ms=(sum(latencies) / len(latencies) * 1000) if latencies else 0.0,
        cpu_s=sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        ok_by_key=dict(recorder.ok_by_key),
        accepted=recorder.accepted,
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="http://127.0.0.1:PORT/path")
    p.add_argument("--kind", choices=("sms", "api"), default="sms")
    p.add_argument("--sign-url", default="", help="the public URL the signature covers (sms)")
    p.add_argument("--auth-token", default="", help="Twilio auth token (sms)")
    p.add_argument("--api-key", default="", help="Threadline API key (api)")
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument("--rate", type=float, default=1000.0, help="open mode: requests per second")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds sent but not measured")
    p.add_argument("--count", type=int, default=0, help="closed mode: stop after this many requests")
    p.add_argument("--phones", type=int, default=5000, help="distinct customers")
    p.add_argument("--phone-base", type=int, default=0)
    p.add_argument("--out", help="write the JSON report here instead of stdout")
    p.add_argument("--record-ids", action="store_true", help="keep (id, accept time) of each 2xx")
    return p


def main() -> None:
    args = parser().parse_args()
    if urlsplit(args.target).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loadgen: only 127.0.0.1 targets are allowed")
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    report = asyncio.run(main_async(args))
    encoded = msgspec.json.encode(report)
    if args.out:
        with open(args.out, "wb") as out:
            out.write(encoded)
    else:
        sys.stdout.buffer.write(encoded + b"\n")


if __name__ == "__main__":
    main()
