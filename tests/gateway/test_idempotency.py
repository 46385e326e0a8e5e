"""Idempotency-Key on POST /v1/messages: one message per key, the first answer replayed."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from redis.asyncio import Redis

from conversations.access import key_digest
from conversations.store import Keys
from gateway.errors import ApiError
from gateway.idempotency import IdempotencyStore, Reservation
from gateway.ingest_writer import IngestWriter
from tests.support.stack import API_KEY, Stack, eventually, unique_phone


def _message(phone: str, body: str) -> dict:
    return {"to": {"phone": phone}, "channel": "sms", "body": body}


async def _post(stack: Stack, payload: dict | bytes, key: str | None) -> tuple[int, dict, dict]:
    headers = {**stack.auth, "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    data = payload if isinstance(payload, bytes) else None
    json_body = None if isinstance(payload, bytes) else payload
    async with stack.http.post(
        stack.gateway_url + "/v1/messages", data=data, json=json_body, headers=headers
    ) as response:
        return response.status, await response.json(), dict(response.headers)


async def _sends_settled(stack: Stack, phone: str) -> list[dict]:
    """What the simulator received for ``phone`` once a later marker message has gone out."""
    marker = f"marker-{uuid.uuid4().hex[:6]}"
    status, _, _ = await _post(stack, _message(phone, marker), None)
    assert status == 202
    sent = await eventually(
        lambda: _when(stack.sent_to(phone), lambda got: any(m["body"] == marker for m in got)),
        timeout=20,
    )
    return [m for m in sent if m["body"] != marker]


async def _when(awaitable, predicate):
    value = await awaitable
    return value if predicate(value) else None


async def test_same_key_same_body_replays_the_first_response(stack: Stack) -> None:
    phone, key = unique_phone(), "order-" + uuid.uuid4().hex
    first = await _post(stack, _message(phone, "Your order shipped"), key)
    # Same request re-serialised with another key order: still the same request.
    again = await _post(stack, {"body": "Your order shipped", "channel": "sms", "to": {"phone": phone}}, key)
    assert first[0] == again[0] == 202
    assert again[1] == first[1]
    assert again[2].get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first[2]
    sent = await _sends_settled(stack, phone)
    assert [m["body"] for m in sent] == ["Your order shipped"]
    status, record = await stack.api("GET", f"/v1/messages/{first[1]['id']}")
    assert status == 200 and record["body"] == "Your order shipped"


async def test_same_key_other_body_is_422(stack: Stack) -> None:
    phone, key = unique_phone(), uuid.uuid4().hex
    assert (await _post(stack, _message(phone, "one"), key))[0] == 202
    status, body, _ = await _post(stack, _message(phone, "two"), key)
    assert status == 422
    assert body["error"]["code"] == "idempotency_key_reused"
    sent = await _sends_settled(stack, phone)
    assert [m["body"] for m in sent] == ["one"]


async def test_concurrent_duplicates_make_one_message(stack: Stack) -> None:
    phone, key = unique_phone(), uuid.uuid4().hex
    results = await asyncio.gather(*(_post(stack, _message(phone, "only once"), key) for _ in range(12)))
    accepted = {body["id"] for status, body, _ in results if status == 202}
    others = [(status, body["error"]["code"]) for status, body, _ in results if status != 202]
    assert len(accepted) == 1, results
    assert all(item == (409, "idempotency_key_in_use") for item in others), others
    sent = await _sends_settled(stack, phone)
    assert [m["body"] for m in sent] == ["only once"]


async def test_rejected_request_does_not_use_up_the_key(stack: Stack) -> None:
    phone, key = unique_phone(), uuid.uuid4().hex
    status, body, _ = await _post(stack, {"to": {"phone": phone}}, key)
    assert status == 422 and body["error"]["code"] == "validation_failed"
    status, body, _ = await _post(stack, _message(phone, "fixed"), key)
    assert status == 202, body


async def test_keys_are_kept_a_day_and_scoped_to_the_api_key(stack: Stack, redis_url: str) -> None:
    phone, key = unique_phone(), uuid.uuid4().hex
    assert (await _post(stack, _message(phone, "kept"), key))[0] == 202
    owner = key_digest(API_KEY).hex()[:32]
    record = Keys(stack.config.key_prefix).idempotency(owner, hashlib.sha256(key.encode()).hexdigest())
    redis = Redis.from_url(redis_url)
    try:
        ttl = await redis.ttl(record)
        assert stack.config.idempotency_ttl_seconds - 60 <= ttl <= stack.config.idempotency_ttl_seconds
        assert ttl >= 24 * 3600 - 60
        assert await redis.hget(record, "state") == b"done"
    finally:
        await redis.aclose()


async def test_bad_idempotency_keys_are_400(stack: Stack) -> None:
    for bad in ("x" * 256, "tab\there"):
        status, body, _ = await _post(stack, _message(unique_phone(), "hi"), bad)
        assert status == 400 and body["error"]["code"] == "invalid_idempotency_key", bad


async def test_a_crashed_request_is_taken_over_with_the_same_id(redis_url: str, key_prefix: str) -> None:
    """A request dying after its write: the retry (after the lease) answers with the same id, writes nothing."""
    keys = Keys(f"{key_prefix}-idem")
    redis = Redis.from_url(redis_url)
    writer = IngestWriter(redis, keys, dedupe_ttl=600, max_delay=0.001)
    store = IdempotencyStore(redis, keys, ttl=600, lease=0.2, wait=1.0)
    request = make_mocked_request("POST", "/v1/messages", headers={"Idempotency-Key": "crash-1"})
    written: list[tuple[str, bool]] = []

    async def crashing(reservation: Reservation | None) -> web.Response:
        assert reservation is not None
        written.append(
            (reservation.resource_id("msg_"), await writer.submit(0, b"x", reservation.dedupe_key))
        )
        raise RuntimeError("gateway died here")

    async def healthy(reservation: Reservation | None) -> web.Response:
        assert reservation is not None
        fresh = await writer.submit(0, b"x", reservation.dedupe_key)
        written.append((reservation.resource_id("msg_"), fresh))
        return web.json_response({"id": reservation.resource_id("msg_")}, status=202)

    try:
        try:
            await store.run(request, "owner", b"{}", crashing)
        except RuntimeError:
            pass
        response = await store.run(request, "owner", b"{}", healthy)
        replay = await store.run(request, "owner", b"{}", healthy)
        assert response.status == replay.status == 202
        assert replay.body == response.body
        (first_id, first_fresh), (retry_id, retry_fresh) = written
        assert first_id == retry_id and first_fresh and not retry_fresh
        assert await redis.xlen(keys.ingest(0)) == 1
        try:
            await store.run(request, "owner", b'{"a": 1}', healthy)
            raise AssertionError("a different body must be refused")
        except ApiError as exc:
            assert exc.status == 422
    finally:
        await writer.close()
        async for name in redis.scan_iter(match=keys.pattern()):
            await redis.unlink(name)
        await redis.aclose()
