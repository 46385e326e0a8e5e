"""One agent's WebSocket: a bounded outgoing queue, its subscription, and its update filter.

Everything sent to the agent (answers and pushed updates) goes through one queue of at most
``limit`` frames, drained by one writer task. A client that reads too slowly fills it; the
socket is then closed with 1013 rather than letting the gateway's memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from conversations.console import ConversationStatus, ConversationSummary, parse_event_id
from gateway.console.frames import ErrorFrame, Queue, encode_frame

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_GOING_AWAY = 1001
MAX_KNOWN = 10_000
CLOSE_TIMEOUT = 10.0


def event_order(event_id: str) -> tuple[int, int]:
    return parse_event_id(event_id) or (0, 0)


class ConsoleSocket:
    """The server side of one authenticated console connection."""

    def __init__(self, ws: web.WebSocketResponse, agent: str, limit: int) -> None:
        self.ws = ws
        self.agent = agent
        self.queues: frozenset[Queue] = frozenset()
        self._limit = limit
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue(maxsize=limit)
        self._writer = asyncio.create_task(self._write_loop(), name=f"console-writer-{agent}")
        self._closing: asyncio.Task | None = None
        # Conversations this socket has been shown: their updates keep coming even after they
        # leave the subscribed queues, so the agent's list can drop or move them.
        self._known: set[str] = set()
        self._last_sent = (0, 0)
        self._held: list[tuple[str, ConversationSummary, bytes]] | None = None
        # While a paged replay has pages left, live updates are not delivered (the next pages
        # replay them from the stream); ``paged_to`` is where the next page starts.
        self._live = True
        self.paged_to: str | None = None

    @property
    def limit(self) -> int:
        """How many frames may wait for this socket's writer."""
        return self._limit

    @property
    def closed(self) -> bool:
        return self._closing is not None or self.ws.closed

    def send(self, frame: object) -> None:
        """Queue a frame for the agent (closes the socket when the queue is full)."""
        self.send_raw(encode_frame(frame))

    def send_raw(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._outgoing.put_nowait(data)
        except asyncio.QueueFull:
            self.close(CLOSE_TRY_AGAIN_LATER, f"too slow: {self._limit} frames pending; reconnect and resume")

    def send_droppable(self, frame: object) -> None:
        """Queue a frame that may be dropped (typing signals) when the socket is backed up."""
        if self._outgoing.qsize() < self._limit // 2:
            self.send(frame)

    def error(self, code: str, message: str, ref: str = "") -> None:
        self.send(ErrorFrame(code, message, ref))

    def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` and ``reason`` (at most once)."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]), CLOSE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass  # a peer that never reads: aiohttp drops the connection when the close times out

    async def finish(self) -> None:
        """Stop the writer once the socket's read loop has ended."""
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await self._closing

    async def _write_loop(self) -> None:
        while True:
            data = await self._outgoing.get()
            try:
                await self.ws.send_str(data.decode())
            except (ConnectionError, RuntimeError):
                return  # the peer went away; the read loop ends too

    # --- subscription ------------------------------------------------------------------------

    def start_subscription(self, queues: list[Queue], resume_from: str | None = None) -> None:
        """Set the queues and hold live updates until the snapshot or replay is queued.

        A subscribe that resumes where this socket's previous replay page ended continues that
        replay, so the conversations it showed stay known.
        """
        if resume_from is None or resume_from != self.paged_to:
            self._known.clear()
        self.queues = frozenset(queues)
        self.paged_to = None
        self._live = True
        self._held = []

    def page_ended(self, event_id: str) -> None:
        """A replay page ended at ``event_id`` with more to come: no live updates until the client
        asks for the next page (they are in the stream, so the next pages bring them)."""
        self.paged_to = event_id
        self._live = False

    def set_position(self, event_id: str) -> None:
        """Updates at or before ``event_id`` are already reflected in what the agent has."""
        self._last_sent = max(self._last_sent, event_order(event_id))

    def show(self, summaries: list[ConversationSummary]) -> None:
        for summary in summaries:
            self._remember(summary.customer_id)

    def end_subscription_setup(self) -> None:
        """Release the updates held during setup (those not already covered)."""
        held, self._held = self._held or [], None
        if not self._live:
            return  # a page of a replay: the next pages replay these
        for event_id, summary, frame in held:
            self.deliver(event_id, summary, frame)

    def wants(self, summary: ConversationSummary) -> bool:
        """Whether an update of this conversation belongs on this socket."""
        if summary.customer_id in self._known or "all" in self.queues:
            return True
        if "mine" in self.queues and summary.assignee == self.agent:
            return True
        return (
            "unassigned" in self.queues
            and not summary.assignee
            and summary.status is not ConversationStatus.RESOLVED
        )

    def deliver(
        self, event_id: str, summary: ConversationSummary, frame: bytes, replay: bool = False
    ) -> None:
        """Offer one update (already encoded) in stream order; skips what the agent has seen."""
        if not self.queues or self.closed or not (self._live or replay):
            return
        if self._held is not None and not replay:
            self._held.append((event_id, summary, frame))
            if len(self._held) > self._limit * 4:
                self.close(CLOSE_TRY_AGAIN_LATER, "too many updates while subscribing; reconnect")
            return
        order = event_order(event_id)
        if order <= self._last_sent or not self.wants(summary):
            return
        self._last_sent = order
        self._remember(summary.customer_id)
        self.send_raw(frame)

    def _remember(self, customer_id: str) -> None:
        if len(self._known) >= MAX_KNOWN:
            self._known.clear()  # bounded: the agent's queues still match what matters
        self._known.add(customer_id)
