"""A new user's first run: ``threadline serve`` on a fresh data dir with no Redis at the probe,
then only what the banner says, up to a signed-in console showing a simulated customer's thread.

One ``serve`` process for the module (it starts its own redis-server and a local Ray); each test
checks one promise of issue 20 against it. The console part runs in Debian's Chromium.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from gateway.embedded import free_port
from tests.gateway.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.banner import bash, commands_under
from tests.support.listeners import listening_addresses, session_pids
from tests.support.wait import eventually, eventually_sync

READY_WITHIN = 150  # seconds; Ray and 16 shard actors on a busy 2-core machine
RAY_NOISE = ("Token authentication", "worker processes have been started", "Started a local Ray instance")


@dataclass
class FirstRun:
    """The running ``serve``: its directory, its process and what it printed."""

    home: Path
    process: subprocess.Popen
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def _wait_for_banner(run: FirstRun) -> None:
    def printed() -> bool:
        if run.process.poll() is not None:
            raise AssertionError(f"serve exited {run.process.returncode}:\n{run.text()}")
        lines = run.text().splitlines()
        return any(line.startswith("Reply to them") for line in lines) and lines[-1].startswith("  curl")

    eventually_sync(printed, READY_WITHIN, what="the whole banner")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    home = tmp_path_factory.mktemp("first-run")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("THREADLINE_", "RAY_"))}
    env.update(
        {
            # Nothing listens there: serve must start its own Redis, as on a machine without one.
            "THREADLINE_REDIS_PROBE": f"127.0.0.1:{free_port()}",
            "THREADLINE_SIMULATOR_PORT": str(free_port()),
            "THREADLINE_SIMULATOR_SMTP_PORT": str(free_port()),
        }
    )
    output = home / "serve.out"
    with output.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port())],
            cwd=home,  # the default data dir, .threadline, is relative to it
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Redis, Ray and the actors share its session: one kill ends all
        )
    run = FirstRun(home, process, output)
    try:
        _wait_for_banner(run)
        yield run
    finally:
        if session_pids(process.pid):  # a test failed before the one that stops it
            os.killpg(process.pid, signal.SIGKILL)


def test_serve_starts_its_own_redis_with_the_aof_in_the_data_dir(first_run: FirstRun) -> None:
    redis_dir = first_run.home / ".threadline" / "redis"
    assert any((redis_dir / "appendonlydir").iterdir()), first_run.text()
    assert (redis_dir / "redis.log").stat().st_size > 0
    url = (redis_dir / "url").read_text().strip()
    prefix = (first_run.home / ".threadline" / "key-prefix").read_text().strip()
    assert f"Redis {url}, keys under {prefix}:*" in first_run.text()


def test_start_up_is_quiet_and_everything_listens_on_loopback(first_run: FirstRun) -> None:
    text = first_run.text()
    assert text.startswith("Threadline gateway ready on"), text  # nothing before the banner
    for noise in (*RAY_NOISE, "Traceback", "Unclosed"):
        assert noise not in text
    addresses = listening_addresses(session_pids(first_run.process.pid))
    assert len(addresses) > 5  # gateway, simulator, SMTP sink, Redis, Ray's servers, the actors
    assert {host for host, _ in addresses} <= {"127.0.0.1", "::1"}, addresses


async def test_following_the_banner_reaches_a_signed_in_console_with_the_customers_thread(
    first_run: FirstRun,
) -> None:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run scripts/ensure-chromium.sh"
    banner = first_run.text()
    [text_in] = commands_under(banner, "Let a simulated customer text you")
    sent = json.loads(await asyncio.to_thread(bash, text_in))
    assert sent["gateway_status"] == 200, sent

    find, read = commands_under(banner, "Find the customer and read their thread", 2)

    async def thread_shows_it() -> str | None:
        output = await asyncio.to_thread(bash, f'{find} 2>/dev/null || true\n[ -n "${{ID:-}}" ] && {read}')
        return output if '"Hi there"' in output else None

    output = await eventually(thread_shows_it, 15, 0.2)
    customer_id = json.loads(output)["customer_id"]

    [link] = commands_under(banner, "Open the agent console")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(link)
            await expect(page.locator("#connection")).to_have_text("Live")
            await expect(page.locator("#agent-name")).to_have_text("dev")
            assert "#login=" not in page.url  # the one-time token left the address bar
            item = page.locator(f'.conv-item[data-customer="{customer_id}"]')
            await expect(item).to_be_visible()
            await item.click()
            await expect(page.locator(".msg.inbound", has_text="Hi there")).to_be_visible()
            bubbles = await page.locator(".thread .bubble").all_inner_texts()
            assert bubbles and all(text.strip() for text in bubbles)

            # The link worked once: opened again, it says so and asks for a token.
            reused = await browser.new_page()
            await reused.goto(link)
            await expect(reused.locator("#login-error")).to_contain_text("used already")
            assert errors == []
        finally:
            await browser.close()


def test_agents_list_finds_the_dev_agent_of_the_running_serve(first_run: FirstRun) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("THREADLINE_")}
    probe = next(line for line in first_run.text().splitlines() if "keys under" in line)
    assert probe  # the same data dir (cwd) tells the command which Redis and prefix serve uses
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "agents", "list"],
        cwd=first_run.home,
        env={**env, "THREADLINE_REDIS_PROBE": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["dev"]


def test_ctrl_c_stops_serve_its_redis_and_ray(first_run: FirstRun) -> None:
    # Last in this module: it ends the run the other tests used.
    os.killpg(first_run.process.pid, signal.SIGINT)
    assert first_run.process.wait(40) == 0, first_run.text()[-2000:]
    # No redis-server, raylet or actor left behind.
    eventually_sync(lambda: not session_pids(first_run.process.pid), 20, what="serve's process tree to end")
