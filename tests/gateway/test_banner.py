"""The serve banner: its commands, pasted into bash in order, do what it says; it shows a key
only when ``serve`` made it (configured keys stay out of logs)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from conversations.config import load_config
from gateway.banner import SAMPLE_PHONE, banner
from gateway.embedded import resolve_embedded
from tests.support.banner import bash, commands_under
from tests.support.stack import API_KEY, Stack, eventually, make_config

PRODUCTION_KEY = "tl_live_4f9a2c1e8b7d6a5f"


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
        # The stack's key is configured, so the banner reads it from the environment, as a user would.
        script = f"export THREADLINE_API_KEY={API_KEY}\n{find}\n{read}"
        body = json.loads(await asyncio.to_thread(bash, script))
        return body if any(e.get("body") == "Hi there" for e in body["entries"]) else None

    found = await eventually(thread)
    assert found["customer_id"] == await stack.customer_id(SAMPLE_PHONE)


def test_a_configured_key_is_masked() -> None:
    config = load_config(env={"THREADLINE_API_KEYS": f"{PRODUCTION_KEY}:send+read,other-key-0123456789"})
    text = banner(config, "127.0.0.1", 8080)
    assert PRODUCTION_KEY not in text and "other-key" not in text
    assert "API key tl_l…" in text and 'Bearer $THREADLINE_API_KEY"' in text


def test_a_short_configured_key_shows_nothing_of_itself() -> None:
    text = banner(load_config(env={"THREADLINE_API_KEYS": "k3y"}), "127.0.0.1", 8080)
    assert "k3y" not in text and "API key …" in text


def test_a_key_serve_generated_is_shown_whole(tmp_path: Path) -> None:
    env = {"THREADLINE_REDIS_URL": "redis://127.0.0.1:1/0", "THREADLINE_DATA_DIR": str(tmp_path)}
    config, _ = resolve_embedded(load_config(env=env), 8080)
    key_file = tmp_path / "dev-api-key"
    key = key_file.read_text().strip()
    assert f"Bearer {key}" in banner(config, "127.0.0.1", 8080, dev_key_file=key_file)
