"""Talking to the agent console as an agent's client does: agents, sockets, frames."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.stack import ADMIN_API_KEY, Stack

Frame = dict[str, Any]


def unique_agent(prefix: str = "agent") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_agent(stack: Stack, name: str | None = None) -> tuple[str, str]:
    """Create an agent through the admin API; returns (name, token)."""
    name = name or unique_agent()
    async with stack.http.post(
        stack.gateway_url + "/v1/agents",
        json={"name": name},
        headers={"Authorization": f"Bearer {ADMIN_API_KEY}"},
    ) as response:
        body = await response.json()
        assert response.status == 201, body
        return body["name"], body["token"]


class ConsoleClient:
    """One agent's WebSocket, with helpers to wait for the frames the server sends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[Frame] = []
        self.welcome: Frame = {}

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, base_url: str, token: str) -> ConsoleClient:
        """Connect and authenticate with a first ``auth`` frame, as the browser page does."""
        ws = await http.ws_connect(base_url.replace("http", "ws", 1) + "/v1/console/ws")
        client = cls(ws)
        await client.send({"type": "auth", "token": token})
        client.welcome = await client.expect(lambda f: f["type"] == "welcome")
        return client

    async def send(self, frame: Frame) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def expect(self, match: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        """The first frame (already received or still to come) that ``match`` accepts."""
        for index, frame in enumerate(self.inbox):
            if match(frame):
                return self.inbox.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout}s; got {self.inbox[-5:]!r}")
            try:
                message = await self.ws.receive(timeout=remaining)
            except TimeoutError:
                continue
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended while waiting: {message!r}")
            frame = json.loads(message.data)
            if match(frame):
                return frame
            self.inbox.append(frame)

    async def request(self, frame: Frame, timeout: float = 10.0) -> Frame:
        """Send a frame with a fresh ``ref`` and wait for the answer carrying it."""
        ref = uuid.uuid4().hex[:12]
        await self.send({**frame, "ref": ref})
        return await self.expect(lambda f: f.get("ref") == ref, timeout)

    async def subscribe(self, queues: list[str], resume_from: str | None = None) -> list[Frame]:
        """Subscribe; returns the frames that came before the ack (snapshot or replayed updates)."""
        frame: Frame = {"type": "subscribe", "queues": queues}
        if resume_from is not None:
            frame["resume_from"] = resume_from
        ref = uuid.uuid4().hex[:12]
        await self.send({**frame, "ref": ref})
        ack = await self.expect(lambda f: f.get("ref") == ref)
        assert ack["type"] == "ack", ack
        before, self.inbox = self.inbox, []
        return before

    async def resume(self, queues: list[str], resume_from: str) -> tuple[list[Frame], int]:
        """Resume as the page does: follow a paged replay (``ack`` with ``more``) to its end.

        Returns the frames replayed (or the snapshot) and how many pages it took.
        """
        frames: list[Frame] = []
        pages = 0
        while True:
            ref = uuid.uuid4().hex[:12]
            await self.send({"type": "subscribe", "queues": queues, "resume_from": resume_from, "ref": ref})
            ack = await self.expect(lambda f, ref=ref: f.get("ref") == ref)
            assert ack["type"] == "ack", ack
            pages += 1
            frames += self.inbox
            self.inbox = []
            if not ack.get("more"):
                return frames, pages
            resume_from = ack["event_id"]

    async def update_for(self, match: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        """The next ``conversation.updated`` whose conversation ``match`` accepts."""
        return await self.expect(
            lambda f: f["type"] == "conversation.updated" and match(f["conversation"]), timeout
        )

    async def close_frame(self, timeout: float = 10.0) -> aiohttp.WSMessage:
        """Read until the server's close frame; returns it (data = code, extra = reason)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return message

    async def close(self) -> None:
        await self.ws.close()
