"""POST /v1/events and /v1/events:batch: validation naming fields, partial batches, idempotency."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.stack import Stack, eventually, unique_phone


async def _events_in_thread(stack: Stack, phone: str, name: str) -> list[dict[str, Any]] | None:
    customer_id = await stack.customer_id(phone)
    if customer_id is None:
        return None
    entries = (await stack.thread(customer_id, limit="500"))["entries"]
    return [e for e in entries if e["kind"] == "event" and e["name"] == name] or None


@pytest.mark.parametrize(
    "payload, code, field",
    [
        ({"customer": {"phone": "+14155550100"}}, "validation_failed", "name"),
        ({"customer": {"phone": "+14155550100"}, "name": "has spaces"}, "validation_failed", "name"),
        ({"name": "x"}, "validation_failed", "customer"),
        ({"customer": {}, "name": "x"}, "validation_failed", "customer"),
        (
            {"customer": {"phone": "+14155550100", "email": "a@b.co"}, "name": "x"},
            "validation_failed",
            "customer",
        ),
        ({"customer": {"phone": "not a phone"}, "name": "x"}, "invalid_identifier", "customer.phone"),
        ({"customer": {"fax": "1"}, "name": "x"}, "validation_failed", "customer.fax"),
        (
            {"customer": {"phone": "+14155550100"}, "name": "x", "properties": [1]},
            "validation_failed",
            "properties",
        ),
        (
            {"customer": {"phone": "+14155550100"}, "name": "x", "occurred_at": "soon"},
            "validation_failed",
            "occurred_at",
        ),
        (
            {"customer": {"phone": "+14155550100"}, "name": "x", "idempotency_key": ""},
            "validation_failed",
            "idempotency_key",
        ),
    ],
)
async def test_a_bad_event_is_a_422_naming_the_field(
    stack: Stack, payload: dict, code: str, field: str
) -> None:
    status, body = await stack.api("POST", "/v1/events", json=payload)
    assert status == 422, body
    assert body["error"]["code"] == code and body["error"]["field"] == field


async def test_an_unknown_customer_id_is_a_404(stack: Stack) -> None:
    status, body = await stack.api("POST", "/v1/events", json={"customer": {"id": "cus_1_NOPE"}, "name": "x"})
    assert status == 404 and body["error"]["field"] == "customer.id"


async def test_an_event_lands_in_the_thread_once_per_idempotency_key(stack: Stack) -> None:
    phone = unique_phone()
    key = "order-" + uuid.uuid4().hex
    event = {
        "customer": {"phone": phone},
        "name": "order_viewed",
        "properties": {"order_id": "o-1", "total": 12.5},
        "occurred_at": "2025-06-01T12:00:00Z",
        "idempotency_key": key,
    }
    status, first = await stack.api("POST", "/v1/events", json=event)
    assert status == 202 and first["status"] == "accepted" and first["id"].startswith("evt_")
    status, again = await stack.api("POST", "/v1/events", json=event)
    assert status == 200 and again == {**first, "status": "duplicate"}
    (logged,) = await eventually(lambda: _events_in_thread(stack, phone, "order_viewed"))
    assert logged["event_id"] == first["id"] and logged["properties"] == {"order_id": "o-1", "total": 12.5}
    assert logged["at"] == 1748779200.0
    # The Idempotency-Key header works the same way.
    plain = {"customer": {"phone": phone}, "name": "order_viewed"}
    header = {"Idempotency-Key": "hdr-" + key}
    assert (await stack.api("POST", "/v1/events", json=plain, headers=header))[0] == 202
    assert (await stack.api("POST", "/v1/events", json=plain, headers=header))[0] == 200


async def test_an_event_by_customer_id_reaches_the_home_shard(stack: Stack) -> None:
    phone = unique_phone()
    await stack.api("POST", "/v1/events", json={"customer": {"phone": phone}, "name": "signed_up"})
    customer_id = await eventually(lambda: stack.customer_id(phone))
    status, _ = await stack.api(
        "POST", "/v1/events", json={"customer": {"id": customer_id}, "name": "logged_in"}
    )
    assert status == 202
    assert await eventually(lambda: _events_in_thread(stack, phone, "logged_in"))


async def test_a_batch_accepts_good_items_and_rejects_bad_ones_one_by_one(stack: Stack) -> None:
    phone = unique_phone()
    key = "batch-" + uuid.uuid4().hex
    events = [
        {
            "customer": {"phone": phone},
            "name": "page_viewed",
            "properties": {"page": "/a"},
            "idempotency_key": key,
        },
        {"customer": {"phone": phone}, "name": "bad name"},
        {"customer": {"email": "not-an-email"}, "name": "page_viewed"},
        {
            "customer": {"phone": phone},
            "name": "page_viewed",
            "properties": {"page": "/a"},
            "idempotency_key": key,
        },
        {"customer": {"phone": phone}, "name": "page_viewed", "properties": {"page": "/b"}},
        "not an object",
    ]
    status, body = await stack.api("POST", "/v1/events:batch", json={"events": events})
    assert status == 200, body
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 3)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["status"] for r in results] == [202, 422, 422, 200, 202, 422]
    assert results[1]["error"]["field"] == "events[1].name"
    assert results[2]["error"] == {
        "code": "invalid_identifier",
        "message": results[2]["error"]["message"],
        "field": "events[2].customer.email",
    }
    assert results[5]["error"]["field"] == "events[5]"
    assert results[3]["id"] == results[0]["id"]
    pages = await eventually(
        lambda: _events_in_thread(stack, phone, "page_viewed"), timeout=15
    )  # both accepted events, the duplicate not
    assert sorted(e["properties"]["page"] for e in pages) == ["/a", "/b"]


async def test_batch_envelope_limits(stack: Stack) -> None:
    status, body = await stack.api("POST", "/v1/events:batch", json={"events": []})
    assert status == 422 and body["error"]["field"] == "events"
    many = [{"customer": {"phone": "+14155550100"}, "name": "x"}] * 1001
    status, body = await stack.api("POST", "/v1/events:batch", json={"events": many})
    assert status == 422 and body["error"]["field"] == "events"
    status, body = await stack.api(
        "POST", "/v1/events:batch", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and body["error"]["code"] == "invalid_json"


async def test_a_full_batch_of_1000_is_accepted(stack: Stack) -> None:
    phones = [unique_phone() for _ in range(20)]
    events = [
        {"customer": {"phone": phones[n % 20]}, "name": "bulk_seen", "properties": {"n": n}}
        for n in range(1000)
    ]
    status, body = await stack.api("POST", "/v1/events:batch", json={"events": events})
    assert status == 200 and body["accepted"] == 1000 and body["rejected"] == 0

    async def all_logged() -> int | None:
        total = 0
        for phone in phones:
            found = await _events_in_thread(stack, phone, "bulk_seen")
            total += len(found or [])
        return total if total == 1000 else None

    assert await eventually(all_logged, timeout=60, interval=0.5) == 1000
