"""The serve banner's commands, pasted into bash in order, do what the banner says."""

from __future__ import annotations

import asyncio
import json
import subprocess

from gateway.banner import SAMPLE_PHONE, banner
from tests.support.banner import bash, commands_under
from tests.support.stack import Stack, eventually, make_config


def test_every_banner_line_is_shell_safe() -> None:
    text = banner(make_config("redis://127.0.0.1:6379/0", 8080, 8081, "tl"), "127.0.0.1", 8080)
    assert "<" not in text and ">" not in text  # bash would read them as redirections
    for line in text.splitlines():
        if line.startswith("  curl") or line.startswith("  ID="):
            done = subprocess.run(["bash", "-n", "-c", line], capture_output=True, text=True)
            assert done.returncode == 0, (line, done.stderr)


async def test_pasting_the_banner_finds_the_simulated_customer_and_their_thread(stack: Stack) -> None:
    port = int(stack.gateway_url.rsplit(":", 1)[1])
    text = banner(stack.config, "127.0.0.1", port)
    [text_in] = commands_under(text, "Let a simulated customer text you")
    sent = json.loads(await asyncio.to_thread(bash, text_in))
    assert sent["gateway_status"] == 200, sent
    await eventually(lambda: stack.customer_id(SAMPLE_PHONE))

    find, read = commands_under(text, "Find the customer and read their thread", 2)

    async def thread() -> dict | None:
        body = json.loads(await asyncio.to_thread(bash, f"{find}\n{read}"))
        return body if any(e.get("body") == "Hi there" for e in body["entries"]) else None

    found = await eventually(thread)
    assert found["customer_id"] == await stack.customer_id(SAMPLE_PHONE)
