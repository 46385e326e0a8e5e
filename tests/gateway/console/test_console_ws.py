"""The agent console's WebSocket protocol, against the running stack."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import aiohttp
from redis.asyncio import Redis

from channels.registry import enabled_channels
from conversations.store import Keys
from tests.support.console import ConsoleClient, create_agent, unique_agent
from tests.support.stack import ADMIN_API_KEY, Stack, eventually, twilio_inbound_form, unique_phone


async def _agent(stack: Stack) -> tuple[str, ConsoleClient]:
    name, token = await create_agent(stack)
    return name, await ConsoleClient.connect(stack.http, stack.gateway_url, token)


async def _customer(stack: Stack, body: str = "Hello, I need help") -> tuple[str, str]:
    """A customer who texted in once; returns (phone, customer id)."""
    phone = unique_phone()
    response = await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, body))
    assert response.status == 200
    return phone, await eventually(lambda: stack.customer_id(phone))


# --- agents and authentication ----------------------------------------------------------------


async def test_bad_or_missing_token_closes_with_policy_violation(stack: Stack) -> None:
    url = stack.gateway_url.replace("http", "ws", 1) + "/v1/console/ws"
    async with stack.http.ws_connect(url, headers={"Authorization": "Bearer tla_not-a-token"}) as ws:
        message = await ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert (message.data, message.extra) == (1008, "invalid agent token")
    async with stack.http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"type": "subscribe", "queues": ["all"]}))
        message = await ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == 1008
        assert "auth" in message.extra
    async with stack.http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": "tla_wrong"}))
        message = await ws.receive(timeout=10)
        assert (message.data, message.extra) == (1008, "invalid agent token")


async def test_admin_key_creates_agents_and_the_token_is_shown_once(stack: Stack) -> None:
    name = unique_agent()
    url = stack.gateway_url + "/v1/agents"
    async with stack.http.post(url, json={"name": name}) as response:
        assert response.status == 401
    admin = {"Authorization": f"Bearer {ADMIN_API_KEY}"}  # scopes per key: tests/gateway/test_access.py
    async with stack.http.post(url, json={"name": "Not A Name!"}, headers=admin) as response:
        assert response.status == 422
        assert (await response.json())["error"]["field"] == "name"
    async with stack.http.post(url, json={"name": name}, headers=admin) as response:
        assert response.status == 201
        token = (await response.json())["token"]
    async with stack.http.post(url, json={"name": name}, headers=admin) as response:
        assert response.status == 409
        assert token not in await response.text()

    redis = Redis.from_url(stack.config.redis_url)
    try:
        stored = await redis.hgetall(Keys(stack.config.key_prefix).agent_tokens())
    finally:
        await redis.aclose()
    assert token.encode() not in b"".join(list(stored) + list(stored.values()))

    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    assert client.welcome["agent"] == name
    assert client.welcome["channels"] == sorted(enabled_channels(stack.config))
    assert name in client.welcome["agents"]
    await client.close()
    # Programs may authenticate with the header instead of a first frame.
    url = stack.gateway_url.replace("http", "ws", 1) + "/v1/console/ws"
    async with stack.http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
        welcome = await ws.receive_json(timeout=10)
        assert (welcome["type"], welcome["agent"]) == ("welcome", name)


# --- live updates ------------------------------------------------------------------------------


async def test_inbound_sms_is_pushed_to_a_subscribed_agent_within_a_second(stack: Stack) -> None:
    _, client = await _agent(stack)
    snapshot = await client.subscribe(["unassigned"])
    assert snapshot[0]["type"] == "queue"

    phone = unique_phone()
    started = time.monotonic()
    response = await stack.post_twilio(
        "/webhooks/twilio/sms", twilio_inbound_form(phone, "Is my parcel lost?")
    )
    assert response.status == 200
    update = await client.update_for(lambda c: c["phone"] == phone, timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"update took {elapsed:.3f}s"

    assert update["reason"] == "inbound"
    conversation = update["conversation"]
    assert conversation["preview"] == "Is my parcel lost?"
    assert conversation["channels"] == ["sms"] and conversation["last_channel"] == "sms"
    assert (conversation["status"], conversation["assignee"], conversation["unread"]) == ("open", "", 1)
    assert conversation["customer_id"] == await stack.customer_id(phone)
    await client.close()


async def test_a_new_subscription_starts_with_a_snapshot_of_the_queue(stack: Stack) -> None:
    phone, customer_id = await _customer(stack, "Snapshot me")
    _, client = await _agent(stack)
    (snapshot,) = await client.subscribe(["all"])
    assert snapshot["type"] == "queue" and snapshot["queues"] == ["all"]
    listed = {c["customer_id"]: c for c in snapshot["conversations"]}
    assert listed[customer_id]["preview"] == "Snapshot me"
    assert listed[customer_id]["phone"] == phone
    await client.close()


async def test_reconnecting_agent_resumes_from_its_last_event_without_gaps(stack: Stack) -> None:
    _, token = await create_agent(stack)
    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    (snapshot,) = await client.subscribe(["all"])
    last_seen = snapshot["event_id"]
    await client.close()

    # While the agent is away, two customers write in.
    missed = [await _customer(stack, f"missed {n}") for n in range(2)]

    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    replayed = await client.subscribe(["all"], resume_from=last_seen)
    assert all(frame["type"] == "conversation.updated" for frame in replayed)
    ids = [frame["event_id"] for frame in replayed]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))), "replayed out of order"
    for phone, customer_id in missed:
        inbound = [
            f
            for f in replayed
            if f["conversation"]["customer_id"] == customer_id and f["reason"] == "inbound"
        ]
        assert inbound, f"missed update for {phone}"
    # And live updates keep coming after the replay.
    phone = unique_phone()
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "after resume"))
    await client.update_for(lambda c: c["phone"] == phone)

    error = await client.request({"type": "subscribe", "queues": ["all"], "resume_from": "yesterday"})
    assert error["type"] == "error" and error["code"] == "invalid_frame"
    await client.close()


async def test_resume_past_trimmed_updates_gets_a_fresh_snapshot(stack: Stack) -> None:
    _, token = await create_agent(stack)
    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    (snapshot,) = await client.subscribe(["all"])
    old = snapshot["event_id"]
    await client.close()
    _, customer_id = await _customer(stack, "after the old position")
    redis = Redis.from_url(stack.config.redis_url)
    try:
        stream = Keys(stack.config.key_prefix).console_events()
        newest = (await redis.xrevrange(stream, count=1))[0][0].decode()
        # What MAXLEN does once enough updates pass: the ones after ``old`` are gone.
        await redis.xtrim(stream, minid=newest, approximate=False)
    finally:
        await redis.aclose()
    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    (resync,) = await client.subscribe(["all"], resume_from=old)
    assert resync["type"] == "queue" and resync["resync"] is True
    assert customer_id in {c["customer_id"] for c in resync["conversations"]}
    await client.close()


# --- claims -----------------------------------------------------------------------------------------


async def test_two_agents_claiming_at_once_one_wins(stack: Stack) -> None:
    _, customer_id = await _customer(stack)
    (name_a, a), (name_b, b) = await _agent(stack), await _agent(stack)
    claim = {"type": "claim", "customer_id": customer_id}
    answers = await asyncio.gather(a.request(claim), b.request(claim))
    kinds = sorted(answer["type"] for answer in answers)
    assert kinds == ["ack", "error"], answers
    winner = name_a if answers[0]["type"] == "ack" else name_b
    error = next(answer for answer in answers if answer["type"] == "error")
    assert error["code"] == "already_claimed"
    assert winner in error["message"]
    # The loser cannot take it over by releasing or resolving it either.
    loser = b if winner == name_a else a
    release = await loser.request({"type": "release", "customer_id": customer_id})
    assert release["code"] == "assigned_to_other"
    await a.close()
    await b.close()


async def test_claim_release_and_transfer_move_the_conversation_between_queues(stack: Stack) -> None:
    _, customer_id = await _customer(stack)
    name_a, a = await _agent(stack)
    name_b, b = await _agent(stack)
    await b.subscribe(["mine"])
    assert (await a.request({"type": "claim", "customer_id": customer_id}))["type"] == "ack"
    transfer = await a.request({"type": "transfer", "customer_id": customer_id, "to_agent": name_b})
    assert transfer["type"] == "ack", transfer
    update = await b.update_for(lambda c: c["customer_id"] == customer_id)
    assert update["reason"] == "transferred" and update["agent"] == name_a
    assert update["conversation"]["assignee"] == name_b
    again = await a.request({"type": "release", "customer_id": customer_id})
    assert again["code"] == "assigned_to_other"
    unknown = await b.request({"type": "transfer", "customer_id": customer_id, "to_agent": "nobody-here"})
    assert unknown["code"] == "unknown_agent"
    assert (await b.request({"type": "release", "customer_id": customer_id}))["type"] == "ack"
    update = await b.update_for(lambda c: c["customer_id"] == customer_id)
    assert (update["reason"], update["conversation"]["status"]) == ("released", "open")
    missing = await a.request({"type": "claim", "customer_id": "cus_0_NOSUCHCUSTOMER"})
    assert missing["code"] == "not_found"
    await a.close()
    await b.close()


async def test_handback_resumes_automation_and_a_new_message_reopens_a_resolved_one(stack: Stack) -> None:
    phone, customer_id = await _customer(stack)
    name, client = await _agent(stack)
    await client.subscribe(["all"])
    await client.request({"type": "claim", "customer_id": customer_id})
    claimed = await client.update_for(lambda c: c["customer_id"] == customer_id and c["assignee"] == name)
    assert claimed["conversation"]["automation"] == "paused"

    assert (await client.request({"type": "handback", "customer_id": customer_id}))["type"] == "ack"
    handed = await client.update_for(lambda c: c["customer_id"] == customer_id and c["assignee"] == "")
    assert handed["reason"] == "handback"
    assert (handed["conversation"]["automation"], handed["conversation"]["status"]) == ("active", "open")

    assert (await client.request({"type": "resolve", "customer_id": customer_id}))["type"] == "ack"
    resolved = await client.update_for(
        lambda c: c["customer_id"] == customer_id and c["status"] == "resolved"
    )
    assert resolved["reason"] == "resolved"
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "One more thing"))
    reopened = await client.update_for(lambda c: c["customer_id"] == customer_id and c["status"] == "open")
    assert reopened["reason"] == "inbound"
    assert reopened["conversation"]["preview"] == "One more thing"
    await client.close()


# --- replies and notes ---------------------------------------------------------------------------


async def test_reply_reaches_the_customer_on_their_last_channel(stack: Stack) -> None:
    phone, customer_id = await _customer(stack, "Can I change my address?")
    name, client = await _agent(stack)
    ack = await client.request({"type": "reply", "customer_id": customer_id, "text": "Sure, what is it?"})
    assert ack["type"] == "ack" and ack["op"] == "reply", ack
    message_id = ack["message_id"]

    (sent,) = await eventually(lambda: stack.sent_to(phone))
    assert sent["body"] == "Sure, what is it?"
    assert f"mid={message_id}" in sent["status_callback"]

    async def delivered_reply() -> dict | None:
        page = await client.request({"type": "open", "customer_id": customer_id})
        replies = [e for e in page["entries"] if e["message_id"] == message_id and e["kind"] == "message"]
        return page if replies and replies[0]["status"] == "delivered" else None

    page = await eventually(delivered_reply)
    reply = next(e for e in page["entries"] if e["message_id"] == message_id)
    assert (reply["direction"], reply["channel"], reply["agent"]) == ("outbound", "sms", name)
    # Replying took the conversation: automation is paused while an agent handles it.
    assert page["conversation"]["assignee"] == name
    assert page["conversation"]["automation"] == "paused"
    assert page["conversation"]["unread"] == 0  # opening it read it
    await client.close()


async def test_a_retried_reply_with_the_same_ref_is_sent_once(stack: Stack) -> None:
    phone, customer_id = await _customer(stack)
    _, client = await _agent(stack)
    frame = {"type": "reply", "customer_id": customer_id, "text": "Only once please", "ref": "retry-1"}
    await client.send(frame)
    first = await client.expect(lambda f: f.get("ref") == "retry-1")
    await client.send(frame)  # e.g. resent after a reconnect
    second = await client.expect(lambda f: f.get("ref") == "retry-1")
    assert (first["type"], first.get("duplicate", False)) == ("ack", False)
    assert (second["type"], second["duplicate"]) == ("ack", True)
    await eventually(lambda: stack.sent_to(phone))
    other_phone, other_id = await _customer(stack)
    await client.request({"type": "reply", "customer_id": other_id, "text": "marker"})
    await eventually(lambda: stack.sent_to(other_phone))
    assert len(await stack.sent_to(phone)) == 1
    await client.close()


async def test_typing_reaches_the_other_agents(stack: Stack) -> None:
    _, customer_id = await _customer(stack)
    _, watcher = await _agent(stack)
    await watcher.subscribe(["all"])
    typist_name, typist = await _agent(stack)
    await typist.send({"type": "typing", "customer_id": customer_id})
    typing = await watcher.expect(lambda f: f["type"] == "typing")
    assert typing == {"type": "typing", "customer_id": customer_id, "agent": typist_name}
    await watcher.close()
    await typist.close()


async def test_reply_on_a_channel_the_customer_cannot_be_reached_on_is_an_error(stack: Stack) -> None:
    phone, customer_id = await _customer(stack)
    _, client = await _agent(stack)
    # Every channel is enabled in the test stack; this customer has a phone but no email.
    error = await client.request(
        {"type": "reply", "customer_id": customer_id, "text": "hi", "channel": "email"}
    )
    assert error["type"] == "error" and error["code"] == "no_address"
    assert "email" in error["message"]
    other_name, other = await _agent(stack)
    await other.request({"type": "claim", "customer_id": customer_id})
    held = await client.request({"type": "reply", "customer_id": customer_id, "text": "me too"})
    assert held["code"] == "assigned_to_other" and other_name in held["message"]
    assert await stack.sent_to(phone) == []
    await client.close()
    await other.close()


async def test_note_is_kept_in_the_thread_and_never_sent(stack: Stack) -> None:
    phone, customer_id = await _customer(stack)
    name, client = await _agent(stack)
    note = await client.request(
        {"type": "note", "customer_id": customer_id, "text": "Customer is a VIP, refund approved"}
    )
    assert note["type"] == "ack" and note["message_id"].startswith("note_")
    # A reply sent after the note proves the outbox ran past the point where the note would be.
    await client.request({"type": "reply", "customer_id": customer_id, "text": "Refund on its way"})
    await eventually(lambda: stack.sent_to(phone))
    assert [m["body"] for m in await stack.sent_to(phone)] == ["Refund on its way"]

    entries = (await stack.thread(customer_id))["entries"]
    notes = [e for e in entries if e["kind"] == "note"]
    assert notes == [
        {
            "cursor": notes[0]["cursor"],
            "kind": "note",
            "at": notes[0]["at"],
            "message_id": note["message_id"],
            "body": "Customer is a VIP, refund approved",
            "agent": name,
        }
    ]
    await client.close()


# --- bad frames ------------------------------------------------------------------------------


async def test_malformed_frames_get_error_frames_and_the_socket_stays_open(stack: Stack) -> None:
    _, client = await _agent(stack)
    await client.ws.send_str("{not json")
    error = await client.expect(lambda f: f["type"] == "error")
    assert error["code"] == "invalid_json"
    await client.send({"type": "dance"})
    error = await client.expect(lambda f: f["type"] == "error")
    assert error["code"] == "invalid_frame"
    missing = await client.request({"type": "claim"})
    assert (missing["type"], missing["code"]) == ("error", "invalid_frame")
    assert "customer_id" in missing["message"]
    too_long = await client.request({"type": "reply", "customer_id": "cus_0_X", "text": "x" * 1601})
    assert too_long["code"] == "invalid_frame"
    await client.ws.send_bytes(b"\x00\x01")
    error = await client.expect(lambda f: f["type"] == "error")
    assert error["code"] == "invalid_frame"
    again = await client.request({"type": "auth", "token": "whatever"})
    assert again["code"] == "already_authenticated"
    assert not client.ws.closed
    assert (await client.subscribe(["mine"]))[0]["type"] == "queue"
    await client.close()


async def test_a_frame_from_an_agent_revoked_unheard_closes_the_socket(stack: Stack) -> None:
    """A gateway that missed the revocation's announcement still checks before each frame."""
    name, token = await create_agent(stack)
    client = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    redis = Redis.from_url(stack.config.redis_url)
    try:  # what revoking stores, without the announcement
        keys = Keys(stack.config.key_prefix)
        digest = hashlib.sha256(token.encode()).hexdigest()
        await redis.hdel(keys.agents(), name)
        await redis.hdel(keys.agent_tokens(), digest)
    finally:
        await redis.aclose()
    await client.send({"type": "subscribe", "queues": ["all"]})
    closed = await client.close_frame()
    assert (closed.data, closed.extra) == (1008, "agent revoked")
