"""The console across gateway processes, and what happens to a socket that reads too slowly."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp import WSMsgType, web

from conversations.agents import token_digest
from conversations.config import AgentConfig
from gateway.agent_admin import sign_in_link
from gateway.app import create_app
from gateway.console import CONSOLE
from gateway.embedded import free_port
from tests.support.console import ConsoleClient, create_agent
from tests.support.stack import ADMIN_API_KEY, Stack, eventually, twilio_inbound_form, unique_phone

CONFIGURED_AGENT = "configured-agent"
CONFIGURED_TOKEN = "tla_" + secrets.token_urlsafe(16)
SOCKET_QUEUE = 4
ADMIN = {"Authorization": f"Bearer {ADMIN_API_KEY}"}


@pytest.fixture(scope="module")
async def second_gateway(stack: Stack) -> AsyncIterator[tuple[str, web.Application]]:
    """Another gateway process's app on the same Redis and shards, with a tiny socket queue and
    an agent that exists only in its config file."""
    config = msgspec.structs.replace(
        stack.config,
        console_socket_queue=SOCKET_QUEUE,
        agents=[AgentConfig(CONFIGURED_AGENT, token_digest(CONFIGURED_TOKEN))],
    )
    port = free_port()
    app = create_app(config, stack.actors)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", app
    await runner.cleanup()


async def test_an_agent_on_another_gateway_sees_every_update(
    stack: Stack, second_gateway: tuple[str, web.Application]
) -> None:
    url, _ = second_gateway
    client = await ConsoleClient.connect(stack.http, url, CONFIGURED_TOKEN)
    assert client.welcome["agent"] == CONFIGURED_AGENT
    await client.subscribe(["unassigned"])
    phone = unique_phone()
    # The webhook arrives at the first gateway; the agent is connected to the second.
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "Hello from gateway one"))
    update = await client.update_for(lambda c: c["phone"] == phone)
    assert update["conversation"]["preview"] == "Hello from gateway one"

    # A claim made on the first gateway reaches the agent on the second as well.
    name, token = await create_agent(stack)
    other = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    customer_id = update["conversation"]["customer_id"]
    await other.request({"type": "claim", "customer_id": customer_id})
    claimed = await client.update_for(lambda c: c["customer_id"] == customer_id and c["assignee"] == name)
    assert claimed["reason"] == "claimed" and claimed["agent"] == name
    await other.close()
    await client.close()


async def test_a_socket_that_does_not_read_is_closed_instead_of_buffering(
    stack: Stack, second_gateway: tuple[str, web.Application]
) -> None:
    url, app = second_gateway
    phone = unique_phone()
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "big thread"))
    customer_id = await eventually(lambda: stack.customer_id(phone))
    writer = await ConsoleClient.connect(stack.http, stack.gateway_url, (await create_agent(stack))[1])
    for n in range(40):  # a thread page of about 160 kB
        ack = await writer.request({"type": "note", "customer_id": customer_id, "text": f"{n} " + "x" * 3990})
        assert ack["type"] == "ack"
    await writer.close()

    hub = app[CONSOLE].hub
    slow = await ConsoleClient.connect(stack.http, url, CONFIGURED_TOKEN)
    assert hub.connected(CONFIGURED_AGENT) == 1
    # Ask for far more than the socket buffers hold (~50 MB) and read none of it until the
    # gateway has given up on the socket.
    for _ in range(300):
        await slow.ws.send_str(json.dumps({"type": "open", "customer_id": customer_id}))
    await eventually(lambda: _async(hub.connected(CONFIGURED_AGENT) == 0), timeout=60)
    received = 0
    while True:
        message = await slow.ws.receive(timeout=60)
        if message.type is not WSMsgType.TEXT:
            break
        received += 1
    assert message.type is WSMsgType.CLOSE, message
    assert message.data == 1013
    assert "too slow" in message.extra
    assert received < 300

    # The gateway is fine, and the agent may reconnect.
    again = await ConsoleClient.connect(stack.http, url, CONFIGURED_TOKEN)
    assert (await again.subscribe(["mine"]))[0]["type"] == "queue"
    await again.close()


async def _async(value: bool) -> bool:
    return value


async def test_revoking_an_agent_closes_its_sockets_on_every_gateway(
    stack: Stack, second_gateway: tuple[str, web.Application]
) -> None:
    url, _ = second_gateway
    name, token = await create_agent(stack)
    # A browser signed in through a one-time link holds a token of its own: revoked too.
    link = await sign_in_link(stack.config, stack.gateway_url, name)
    async with stack.http.post(
        stack.gateway_url + "/v1/console/login", json={"login_token": link.partition("#login=")[2]}
    ) as response:
        browser_token = (await response.json())["token"]
    here = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    there = await ConsoleClient.connect(stack.http, url, browser_token)
    await there.subscribe(["unassigned"])
    revoke = f"{stack.gateway_url}/v1/agents/{name}"
    async with stack.http.delete(revoke) as response:
        assert response.status == 401  # no API key (scopes: tests/gateway/test_access.py)
    async with stack.http.delete(revoke, headers=ADMIN) as response:
        assert response.status == 200 and await response.json() == {"name": name, "revoked": True}
    for client in (here, there):
        closed = await client.close_frame()
        assert (closed.data, closed.extra) == (1008, "agent revoked")
    for revoked in (token, browser_token):
        async with stack.http.ws_connect(
            stack.gateway_url.replace("http", "ws", 1) + "/v1/console/ws",
            headers={"Authorization": f"Bearer {revoked}"},
        ) as ws:
            refused = await ws.receive(timeout=10)
            assert (refused.type, refused.data) == (WSMsgType.CLOSE, 1008)
    async with stack.http.delete(revoke, headers=ADMIN) as response:
        assert response.status == 404
    async with stack.http.delete(f"{url}/v1/agents/{CONFIGURED_AGENT}", headers=ADMIN) as response:
        assert response.status == 409 and (await response.json())["error"]["code"] == "agent_configured"


async def test_a_resume_longer_than_the_socket_queue_is_paged(
    stack: Stack, second_gateway: tuple[str, web.Application]
) -> None:
    url, _ = second_gateway
    _, token = await create_agent(stack)
    client = await ConsoleClient.connect(stack.http, url, token)
    (snapshot,) = await client.subscribe(["all"])
    last_seen = snapshot["event_id"]
    await client.close()
    # While the agent is away, more customers write in than its socket's queue holds.
    phones = [unique_phone() for _ in range(SOCKET_QUEUE * 3)]
    for phone in phones:
        await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "while you were away"))
    await eventually(lambda: _all_seen_by_a_snapshot(stack, token, set(phones)))

    client = await ConsoleClient.connect(stack.http, url, token)
    replayed, pages = await client.resume(["all"], last_seen)
    assert pages > 1  # the replay came in pages that each fit the socket's queue
    assert all(frame["type"] == "conversation.updated" for frame in replayed), replayed[:3]
    ids = [tuple(map(int, frame["event_id"].split("-"))) for frame in replayed]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "replayed out of order or twice"
    assert set(phones) <= {frame["conversation"]["phone"] for frame in replayed}
    # The socket survived the replay and live updates follow it.
    phone = unique_phone()
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "after resume"))
    await client.update_for(lambda c: c["phone"] == phone)
    await client.close()


async def _all_seen_by_a_snapshot(stack: Stack, token: str, phones: set[str]) -> bool:
    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    try:
        (snapshot,) = await client.subscribe(["all"])
        return phones <= {c["phone"] for c in snapshot["conversations"]}
    finally:
        await client.close()
