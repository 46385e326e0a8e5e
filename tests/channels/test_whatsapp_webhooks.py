"""GET/POST /webhooks/whatsapp against the running stack: verification, signatures, batches, dedupe."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from conversations.store import Keys
from tests.support.stack import Stack, eventually, unique_phone
from tests.support.whatsapp import (
    FIXTURE_CUSTOMER,
    FIXTURE_SECOND_CUSTOMER,
    WEBHOOK,
    customer_hash,
    fixture_for,
    messages_of,
    post_whatsapp,
    sign,
)

META_RETRY_WINDOW = 7 * 24 * 3600


async def _verify(stack: Stack, **params: str) -> tuple[int, str, str]:
    async with stack.http.get(stack.gateway_url + WEBHOOK, params=params) as response:
        return response.status, response.content_type, await response.text()


async def test_subscription_check_echoes_the_challenge(stack: Stack) -> None:
    token = stack.config.whatsapp.verify_token
    status, content_type, text = await _verify(
        stack, **{"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    )
    assert (status, content_type, text) == (200, "text/plain", "1158201444")


async def test_subscription_check_with_a_wrong_token_or_mode_is_403_json(stack: Stack) -> None:
    token = stack.config.whatsapp.verify_token
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": token, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ):
        status, content_type, text = await _verify(stack, **params)
        assert (status, content_type) == (403, "application/json")
        assert json.loads(text)["error"]["code"] == "verification_failed"


async def test_a_text_message_lands_in_the_customer_thread(stack: Stack) -> None:
    phone = unique_phone()
    response, body = await post_whatsapp(stack, fixture_for("text", {FIXTURE_CUSTOMER: phone}))
    assert response.status == 200, body
    assert (body["messages"], body["statuses"], body["duplicates"]) == (1, 0, 0)
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (entry,) = await eventually(lambda: messages_of(stack, customer_id))
    assert (entry["channel"], entry["direction"], entry["status"]) == ("whatsapp", "inbound", "received")
    assert (entry["body"], entry["provider"], entry["address"]) == (
        "Does it come in another color?",
        "meta",
        phone,
    )
    customer = await customer_hash(stack, customer_id)
    assert customer["profile_name"] == "Sheena Nelson"
    assert float(customer["last_inbound_at:whatsapp"]) == 1749416383.0


async def test_location_and_button_replies_keep_their_data(stack: Stack) -> None:
    phone = unique_phone()
    for name in ("location", "interactive_list_reply"):
        response, _ = await post_whatsapp(stack, fixture_for(name, {FIXTURE_CUSTOMER: phone}))
        assert response.status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    location, reply = await eventually(lambda: messages_of(stack, customer_id, at_least=2))
    assert location["location"] == {
        "latitude": 37.4611978,
        "longitude": -122.2164385,
        "name": "Meta Headquarters",
        "address": "1 Hacker Way, Menlo Park, CA 94025",
    }
    assert (reply["body"], reply["reply_payload"]) == ("Express shipping", "priority-express")


async def test_bad_or_missing_signature_is_403_and_stores_nothing(stack: Stack) -> None:
    phone = unique_phone()
    raw = fixture_for("text", {FIXTURE_CUSTOMER: phone})
    forged = "sha256=" + "0" * 64
    other_body = fixture_for("text", {FIXTURE_CUSTOMER: unique_phone()})
    for signature, code in (
        (forged, "signature_invalid"),
        (None, "signature_missing"),
        ("sha1=" + "0" * 40, "signature_invalid"),
    ):
        response, body = await post_whatsapp(stack, raw, signature=signature)
        assert response.status == 403 and body["error"]["code"] == code
    # A signature made for another body does not cover this one.
    response, _ = await post_whatsapp(stack, raw, signature=sign(stack, other_body))
    assert response.status == 403
    # Let the shards apply a later, good POST; the refused customer must still not exist.
    marker = unique_phone()
    response, _ = await post_whatsapp(stack, fixture_for("text", {FIXTURE_CUSTOMER: marker}))
    assert response.status == 200
    await eventually(lambda: stack.customer_id(marker))
    assert await stack.customer_id(phone) is None


async def test_malformed_bodies_are_400(stack: Stack) -> None:
    for raw, code in (
        (b'{"object": "whatsapp_business_account", "entry": [', "invalid_json"),
        (b"", "invalid_json"),
        (b'{"object": "whatsapp_business_account", "entry": "x"}', "invalid_payload"),
        (b'{"object": "page", "entry": []}', "invalid_payload"),
    ):
        response, body = await post_whatsapp(stack, raw)
        assert response.status == 400, raw
        assert body["error"]["code"] == code, raw


async def test_a_batched_post_is_stored_whole(stack: Stack) -> None:
    first, second = unique_phone(), unique_phone()
    raw = fixture_for("batched", {FIXTURE_CUSTOMER: first, FIXTURE_SECOND_CUSTOMER: second})
    response, body = await post_whatsapp(stack, raw)
    assert response.status == 200, body
    assert (body["messages"], body["statuses"], body["duplicates"], body["skipped"]) == (3, 2, 0, [])
    first_id = await eventually(lambda: stack.customer_id(first))
    second_id = await eventually(lambda: stack.customer_id(second))
    assert first_id != second_id
    first_thread = await eventually(lambda: messages_of(stack, first_id, at_least=2))
    assert [e["body"] for e in first_thread] == ["Is my order on its way?", "Track order"]
    (only,) = await eventually(lambda: messages_of(stack, second_id))
    assert only["body"] == "Hello, I need to change my address"


async def test_a_retried_post_is_deduped_per_wamid_and_status(stack: Stack) -> None:
    phone = unique_phone()
    raw = fixture_for("text", {FIXTURE_CUSTOMER: phone})
    for attempt in range(3):  # Meta retries what it believes failed
        response, body = await post_whatsapp(stack, raw)
        assert response.status == 200
        assert body["duplicates"] == (0 if attempt == 0 else 1)
    response, body = await post_whatsapp(stack, fixture_for("button", {FIXTURE_CUSTOMER: phone}))
    assert body["duplicates"] == 0
    customer_id = await eventually(lambda: stack.customer_id(phone))
    entries = await eventually(lambda: messages_of(stack, customer_id, at_least=2))
    inbound = [e["body"] for e in entries if e["direction"] == "inbound"]
    assert inbound == ["Does it come in another color?", "Stop promotions"]
    # "Stop promotions" is Meta's marketing opt-out button: its confirmation is the only reply.
    assert [e["direction"] for e in entries[2:]] in ([], ["outbound"])
    # The dedupe keys outlive Meta's 7 days of retries.
    redis = Redis.from_url(stack.config.redis_url)
    try:
        keys = Keys(stack.config.key_prefix)
        pattern = keys.dedupe(0, "whatsapp:msg:*").replace("{s0}", "{s*}")
        ttls = [await redis.ttl(key) async for key in redis.scan_iter(match=pattern, count=1000)]
    finally:
        await redis.aclose()
    assert ttls and min(ttls) > META_RETRY_WINDOW - 600  # generous: the suite may run for minutes


async def test_statuses_of_one_wamid_dedupe_per_status(stack: Stack) -> None:
    phone = unique_phone()
    suffix = "dedupe" + phone[-6:]
    sent = fixture_for("status_sent", {FIXTURE_CUSTOMER: phone}, wamid_suffix=suffix)
    delivered = fixture_for("status_delivered", {FIXTURE_CUSTOMER: phone}, wamid_suffix=suffix)
    results = [(await post_whatsapp(stack, raw))[1]["duplicates"] for raw in (sent, sent, delivered)]
    assert results == [0, 1, 0]
