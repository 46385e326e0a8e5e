"""Bad input gets a JSON error with the right 4xx, never a 500."""

from __future__ import annotations

import asyncio

import pytest

from conversations.models import Channel
from gateway.routes.health import READINESS_CACHE_SECONDS
from tests.support.stack import Stack, eventually


async def _raw(stack: Stack, method: str, path: str, **kwargs) -> tuple[int, dict]:
    async with stack.http.request(method, stack.gateway_url + path, **kwargs) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def test_unknown_route_is_json_404(stack: Stack) -> None:
    status, body = await _raw(stack, "GET", "/nope")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_wrong_method_is_json_405(stack: Stack) -> None:
    status, body = await _raw(stack, "GET", "/webhooks/twilio/sms")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


async def test_missing_or_wrong_api_key_is_401(stack: Stack) -> None:
    status, body = await _raw(stack, "GET", "/v1/customers?phone=%2B14155550100")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, _ = await _raw(
        stack, "GET", "/v1/customers?phone=%2B14155550100", headers={"Authorization": "Bearer wrong"}
    )
    assert status == 401


@pytest.mark.parametrize(
    "payload, status, code, field",
    [
        (b"{not json", 400, "invalid_json", None),
        (b"", 400, "empty_body", None),
        (b'{"body": "hi"}', 422, "validation_failed", "to"),
        (b'{"to": {"phone": "+14155550100"}}', 422, "validation_failed", "body"),
        (b'{"to": {"phone": "+14155550100"}, "body": ""}', 422, "validation_failed", "body"),
        (b'{"to": {"phone": "not a number"}, "body": "hi"}', 422, "invalid_identifier", "to.phone"),
        (
            b'{"to": {"phone": "+14155550100"}, "body": "hi", "type": "spam"}',
            422,
            "validation_failed",
            "type",
        ),
        (
            b'{"to": {"phone": "+14155550100"}, "body": "hi", "channel": "pigeon"}',
            422,
            "validation_failed",
            "channel",
        ),
        (b'{"to": {"phone": "+14155550100"}, "body": "hi", "extra": 1}', 422, "validation_failed", "extra"),
        (b"[1, 2]", 422, "validation_failed", None),
    ],
)
async def test_bad_message_bodies(
    stack: Stack, payload: bytes, status: int, code: str, field: str | None
) -> None:
    got_status, body = await _raw(
        stack,
        "POST",
        "/v1/messages",
        data=payload,
        headers={**stack.auth, "Content-Type": "application/json"},
    )
    assert got_status == status, body
    assert body["error"]["code"] == code
    assert body["error"].get("field") == field


async def test_webhook_without_message_sid_is_400(stack: Stack) -> None:
    response = await stack.post_twilio("/webhooks/twilio/sms", {"From": "+14155550100", "Body": "x"})
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "MessageSid"


async def test_webhook_with_json_body_is_415(stack: Stack) -> None:
    status, _ = await _raw(stack, "POST", "/webhooks/twilio/sms", json={"From": "+1"})
    assert status == 415


async def test_status_callback_without_our_ids_is_400(stack: Stack) -> None:
    response = await stack.post_twilio(
        "/webhooks/twilio/sms/status", {"MessageSid": "SM1", "MessageStatus": "sent"}
    )
    assert response.status == 400


async def test_unknown_customer_and_message_are_404(stack: Stack) -> None:
    status, body = await stack.api("GET", "/v1/customers/cus_0_NOPE/thread")
    assert status == 404 and body["error"]["code"] == "customer_not_found"
    status, body = await stack.api("GET", "/v1/messages/msg_NOPE")
    assert status == 404


async def test_bad_query_values_are_422(stack: Stack) -> None:
    status, body = await stack.api("GET", "/v1/customers", params={"phone": "12"})
    assert status == 422 and body["error"]["field"] == "phone"
    status, body = await stack.api("GET", "/v1/customers")
    assert status == 422
    status, body = await stack.api("GET", "/v1/customers/cus_0_X/thread", params={"limit": "0"})
    assert status == 422 and body["error"]["field"] == "limit"


async def test_health_and_readiness(stack: Stack) -> None:
    async with stack.http.get(stack.gateway_url + "/healthz") as response:
        assert response.status == 200
    async with stack.http.get(stack.gateway_url + "/readyz") as response:
        body = await response.json()
        assert response.status == 200, body
        assert body.pop("checked_at") > 0
        assert body == {"status": "ready", "redis": "ok", "shards": 4, "simulated_channels": sorted(Channel)}


async def test_readiness_is_probed_at_most_once_a_second(stack: Stack) -> None:
    """/readyz is unauthenticated and pings every shard actor: a flood reuses one answer."""

    async def checked_at() -> float:
        async with stack.http.get(stack.gateway_url + "/readyz") as response:
            return (await response.json())["checked_at"]

    answers = await asyncio.gather(*(checked_at() for _ in range(20)))
    assert len(set(answers)) == 1
    first = answers[0]
    # ...and a probe a little later (READINESS_CACHE_SECONDS) checks again.
    later = await eventually(lambda: _newer(checked_at, first), timeout=5 * READINESS_CACHE_SECONDS)
    assert later > first


async def _newer(checked_at, than: float) -> float | None:
    value = await checked_at()
    return value if value != than else None
