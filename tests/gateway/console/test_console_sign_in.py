"""Signing in to the console: one-time sign-in links, and ``threadline agents`` for deployments."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import pytest
from redis.asyncio import Redis

from conversations.agents import token_digest
from conversations.store import Keys
from gateway.agent_admin import sign_in_link
from tests.support.console import ConsoleClient, unique_agent
from tests.support.stack import Stack


async def _redeem(stack: Stack, login_token: str) -> tuple[int, dict]:
    async with stack.http.post(
        stack.gateway_url + "/v1/console/login", json={"login_token": login_token}
    ) as response:
        return response.status, await response.json()


async def test_a_sign_in_link_works_once_and_is_never_logged(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    agent = unique_agent("dev")
    caplog.set_level(logging.DEBUG)
    link = await sign_in_link(stack.config, stack.gateway_url, agent)
    page, _, fragment = link.partition("#")
    assert page == stack.gateway_url + "/console"  # the token is in the fragment: browsers never send it
    login_token = fragment.removeprefix("login=")

    redis = Redis.from_url(stack.config.redis_url)
    try:
        key = Keys(stack.config.key_prefix).console_login(token_digest(login_token))
        assert 0 < await redis.ttl(key) <= stack.config.console_login_ttl_seconds
    finally:
        await redis.aclose()

    status, body = await _redeem(stack, login_token)
    assert status == 200 and body["agent"] == agent, body
    client = await ConsoleClient.connect(stack.http, stack.gateway_url, body["token"])
    assert client.welcome["agent"] == agent
    await client.close()

    status, body = await _redeem(stack, login_token)  # used up
    assert status == 403 and body["error"]["code"] == "login_invalid"
    assert (await _redeem(stack, "tll_made-up"))[0] == 403
    assert login_token not in caplog.text


async def test_agents_create_and_list_from_the_command_line(stack: Stack) -> None:
    name = unique_agent("cli")
    env = {
        **os.environ,
        "THREADLINE_REDIS_URL": stack.config.redis_url,
        "THREADLINE_KEY_PREFIX": stack.config.key_prefix,
    }

    def threadline(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gateway.cli", "agents", *argv]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    created = await asyncio.to_thread(threadline, "create", name)
    assert created.returncode == 0, created.stderr
    token = created.stdout.split()[-1]
    assert token.startswith("tla_")
    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    assert client.welcome["agent"] == name
    await client.close()

    listed = await asyncio.to_thread(threadline, "list")
    assert name in listed.stdout.split()
    again = await asyncio.to_thread(threadline, "create", name)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = await asyncio.to_thread(threadline, "create", "Not A Name")
    assert bad.returncode == 2 and "invalid agent name" in bad.stderr
