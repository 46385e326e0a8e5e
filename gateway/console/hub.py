"""One reader of the console update stream per gateway, fanning each update out to its sockets.

Every gateway process reads the same Redis stream, so an agent connected to any gateway sees
every update. Typing signals are ephemeral and travel over Redis pub/sub instead, as do agent
revocations: each gateway closes the revoked agent's sockets (and, after any gap in its
subscription, checks every connected agent still exists).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from conversations.agents import AgentDirectory
from conversations.console import ConsoleEvent, ConsoleStore, decode_event
from conversations.store import INGEST_FIELD, Keys
from gateway.console.frames import ConversationUpdated, TypingFrame, TypingSignal, encode_frame
from gateway.console.session import CLOSE_GOING_AWAY, CLOSE_POLICY, ConsoleSocket

log = logging.getLogger(__name__)

READ_BATCH = 500
BLOCK_MS = 2000  # below redis-py's default 5 s socket timeout, or every idle read times out
RETRY_SECONDS = 1.0

_decode_typing = msgspec.json.Decoder(TypingSignal).decode


class ConsoleHub:
    """The gateway's console sockets and the tasks that feed them."""

    def __init__(self, redis: Redis, keys: Keys, store: ConsoleStore, agents: AgentDirectory) -> None:
        self._redis = redis
        self._keys = keys
        self._store = store
        self._agents = agents
        self._sockets: set[ConsoleSocket] = set()
        self._tasks: list[asyncio.Task] = []
        self._position = "0-0"

    async def start(self) -> None:
        """Start reading from the newest update (sockets replay older ones themselves)."""
        self._position = await self._store.last_event_id()
        self._tasks = [
            asyncio.create_task(self._read_updates(), name="console-updates"),
            asyncio.create_task(self._read_signals(), name="console-signals"),
        ]

    async def stop(self) -> None:
        """Close every socket (1001) and stop the readers."""
        for sock in list(self._sockets):
            sock.close(CLOSE_GOING_AWAY, "gateway shutting down")
        for sock in list(self._sockets):
            await sock.finish()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def add(self, sock: ConsoleSocket) -> None:
        self._sockets.add(sock)

    def discard(self, sock: ConsoleSocket) -> None:
        self._sockets.discard(sock)

    def connected(self, agent: str) -> int:
        """How many sockets ``agent`` has open on this gateway."""
        return sum(1 for sock in self._sockets if sock.agent == agent and not sock.closed)

    async def publish_typing(self, customer_id: str, agent: str) -> None:
        await self._redis.publish(
            self._keys.console_typing(), msgspec.json.encode(TypingSignal(customer_id, agent))
        )

    async def _read_updates(self) -> None:
        stream = self._keys.console_events()
        while True:
            last = self._position
            try:
                reply = await self._redis.xread({stream: self._position}, count=READ_BATCH, block=BLOCK_MS)
                if not reply:
                    continue
                events: list[tuple[str, ConsoleEvent]] = []
                for stream_id, fields in reply[0][1]:
                    try:
                        events.append((stream_id.decode(), decode_event(fields[INGEST_FIELD])))
                    except (msgspec.DecodeError, KeyError):
                        log.error("console: undecodable update %r skipped", stream_id)
                last = reply[0][1][-1][0].decode()
                if self._sockets and events:
                    await self._fan_out(events)
                # Advance only after the fan-out: a Redis error above re-reads the same updates.
                self._position = last
            except RedisError as exc:
                log.warning("console: update stream read failed, retrying: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:
                # A bug must not stop every agent's updates: skip this batch, keep reading.
                log.exception("console: fan-out failed; skipping a batch of updates")
                self._position = last
                await asyncio.sleep(RETRY_SECONDS)

    async def _fan_out(self, events: list[tuple[str, ConsoleEvent]]) -> None:
        summaries = await self._store.summaries(event.customer_id for _, event in events)
        for event_id, event in events:
            summary = summaries.get(event.customer_id)
            if summary is None:
                continue
            frame = encode_frame(ConversationUpdated(event_id, event.reason, summary, event.agent))
            for sock in list(self._sockets):
                sock.deliver(event_id, summary, frame)

    def close_agent(self, agent: str) -> None:
        """Close every socket of ``agent`` on this gateway (it was revoked)."""
        for sock in list(self._sockets):
            if sock.agent == agent:
                sock.close(CLOSE_POLICY, "agent revoked")

    async def _close_revoked(self) -> None:
        """Close the sockets of agents revoked while this gateway was not listening."""
        for agent in {sock.agent for sock in self._sockets}:
            if not await self._agents.exists(agent):
                self.close_agent(agent)

    async def _read_signals(self) -> None:
        typing, revoked = self._keys.console_typing(), self._keys.console_revoked()
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(typing, revoked)
                await self._close_revoked()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    channel = message["channel"].decode()
                    if channel == revoked:
                        self.close_agent(message["data"].decode())
                    elif channel == typing:
                        self._relay_typing(message["data"])
            except RedisError as exc:
                log.warning("console: signal channels failed, retrying: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:
                log.exception("console: signal relay failed, restarting it")
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _relay_typing(self, data: bytes) -> None:
        try:
            signal = _decode_typing(data)
        except msgspec.DecodeError:
            return
        frame = TypingFrame(signal.customer_id, signal.agent)
        for sock in list(self._sockets):
            if sock.queues and sock.agent != signal.agent:
                sock.send_droppable(frame)
