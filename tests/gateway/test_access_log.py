"""``--access-log`` keeps secrets out of the log: webhook secrets and link tokens are redacted."""

from __future__ import annotations

import logging
import uuid

import pytest
from aiohttp import web

from gateway.access_log import gateway_runner
from gateway.app import create_app
from gateway.embedded import free_port
from tests.support.stack import Stack, unique_phone


@pytest.fixture
async def logged_gateway(stack: Stack):
    """A second gateway app on the stack, served the way ``threadline serve --access-log`` does."""
    port = free_port()
    runner = gateway_runner(create_app(stack.config, stack.actors), access_log=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_secrets_and_tokens_never_reach_the_access_log(
    stack: Stack, logged_gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    status, customer = await stack.api(
        "PUT", f"/v1/customers/log_{uuid.uuid4().hex[:8]}", json={"identifiers": {"phone": unique_phone()}}
    )
    assert status == 201, customer
    status, link = await stack.api("POST", f"/v1/customers/{customer['customer']['id']}/preference-link")
    assert status in (200, 201), link
    page = link["url"].replace(stack.config.public_url, logged_gateway)
    token = page.rsplit("/", 1)[1]
    secret = stack.config.email.inbound_secret
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        async with stack.http.get(page) as response:
            assert response.status == 200
        async with stack.http.post(
            f"{logged_gateway}/webhooks/email/inbound?secret={secret}",
            data={"x": "1"},
            headers={"Referer": page},
        ) as response:
            await response.read()
        for path in ("/t/clicktoken123", "/t/o/opentoken456.gif"):
            async with stack.http.get(logged_gateway + path, allow_redirects=False) as response:
                await response.read()
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert len(lines) == 4, lines
    text = "\n".join(lines)
    for leaked in (token, secret, "clicktoken123", "opentoken456"):
        assert leaked not in text
    assert "/preferences/[redacted]" in text and "secret=[redacted]" in text
    assert "/t/[redacted]" in text and "/t/o/[redacted].gif" in text
