"""RCS end to end: signed RBM webhooks into the thread, sends through the simulator, SMS adaptation."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import aiohttp
import msgspec

from channels.rcs_rbm import compute_signature
from conversations.sms_segments import segment_count
from tests.support.fixtures import fixture
from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone


async def post_rbm(
    stack: Stack, payload: dict[str, Any], signature: str | None = "auto"
) -> aiohttp.ClientResponse:
    """POST a UserMessage/UserEvent to /webhooks/rcs in a Pub/Sub push, signed as RBM does."""
    data = msgspec.json.encode(payload)
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": "2070443601311540",
            "publishTime": "2018-12-31T15:01:23.200Z",
        },
        "subscription": "projects/rbm-threadline/subscriptions/rbm-agent-subscription",
    }
    headers = {"Content-Type": "application/json"}
    if signature == "auto":
        signature = compute_signature(stack.config.rbm.client_token, data)
    if signature is not None:
        headers["X-Goog-Signature"] = signature
    response = await stack.http.post(
        stack.gateway_url + "/webhooks/rcs", data=msgspec.json.encode(body), headers=headers
    )
    await response.read()
    return response


def _from(name: str, phone: str) -> dict[str, Any]:
    """A fixture re-addressed to a fresh phone and message id, so tests never collide."""
    payload = fixture("rcs", name)
    payload["senderPhoneNumber"] = phone
    if "eventType" not in payload:
        payload["messageId"] = "Mx" + uuid.uuid4().hex
    return payload


async def _messages(stack: Stack, customer_id: str, count: int = 1) -> list[dict] | None:
    entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "message"]
    return entries if len(entries) >= count else None


async def _record(stack: Stack, message_id: str, status: str) -> dict | None:
    code, body = await stack.api("GET", f"/v1/messages/{message_id}")
    return body if code == 200 and body["status"] == status else None


async def _send(stack: Stack, payload: dict[str, Any]) -> str:
    status, accepted = await stack.api("POST", "/v1/messages", json=payload)
    assert status == 202, accepted
    return accepted["id"]


async def test_webhook_verification_echoes_the_secret(stack: Stack) -> None:
    url = stack.gateway_url + "/webhooks/rcs"
    good = {"clientToken": stack.config.rbm.client_token, "secret": "8417263950"}
    async with stack.http.post(url, json=good) as response:
        assert response.status == 200 and await response.text() == "8417263950"
    async with stack.http.post(url, data=msgspec.json.encode(fixture("rcs", "verification"))) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "client_token_invalid"


async def test_user_messages_land_in_the_phone_customers_thread(stack: Stack) -> None:
    phone = unique_phone()
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "texting first"))
    customer_id = await eventually(lambda: stack.customer_id(phone))
    for name in ("user_message_text", "user_message_suggestion_response", "user_message_location"):
        response = await post_rbm(stack, _from(name, phone))
        assert response.status == 200, name
    sms, text, reply, location = await eventually(lambda: _messages(stack, customer_id, 4))
    assert sms["channel"] == "sms"
    assert all(e["channel"] == "rcs" and e["direction"] == "inbound" for e in (text, reply, location))
    assert (text["body"], text["provider"], text["address"]) == ("Hello to you!", "rbm", phone)
    assert reply["body"] == "Reschedule"
    assert reply["attributes"]["postback_data"] == "reschedule_delivery"
    assert location["body"] == "geo:37.4220579,-122.0840897"


async def test_a_redelivered_message_is_stored_once(stack: Stack) -> None:
    phone = unique_phone()
    payload = _from("user_message_text", phone)
    for _ in range(3):  # RBM retries until it gets a 200
        assert (await post_rbm(stack, payload)).status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    await eventually(lambda: _messages(stack, customer_id))
    marker = await _send(stack, {"to": {"phone": phone}, "body": "marker", "channel": "sms"})
    await eventually(lambda: _record(stack, marker, "delivered"))
    entries = await _messages(stack, customer_id, 2)
    assert entries is not None and [e["direction"] for e in entries] == ["inbound", "outbound"]


async def test_bad_signatures_are_403_and_store_nothing(stack: Stack) -> None:
    phone = unique_phone()
    payload = _from("user_message_text", phone)
    forged = await post_rbm(stack, payload, signature=base64.b64encode(b"\0" * 64).decode())
    missing = await post_rbm(stack, payload, signature=None)
    signed_other = compute_signature(stack.config.rbm.client_token, b'{"text": "something else"}')
    swapped = await post_rbm(stack, payload, signature=signed_other)
    for response in (forged, missing, swapped):
        assert response.status == 403
    typing = await post_rbm(stack, _from("user_event_is_typing", phone))
    assert typing.status == 200
    marker = unique_phone()
    await post_rbm(stack, _from("user_message_text", marker))
    await eventually(lambda: stack.customer_id(marker))
    assert await stack.customer_id(phone) is None


async def test_text_send_is_delivered_then_read_via_rbm_events(stack: Stack) -> None:
    phone = unique_phone()
    message_id = await _send(stack, {"to": {"phone": phone}, "body": "Hello, World!", "channel": "rcs"})

    async def sent() -> list | None:
        return (await stack.simulator("GET", "/simulator/rcs/messages", params={"to": phone}))["messages"]

    (message,) = await eventually(sent)
    assert message["contentMessage"] == {"text": "Hello, World!"}
    uuid.UUID(message["message_id"])  # RBM requires a UUID messageId
    record = await eventually(lambda: _record(stack, message_id, "read"))
    assert (record["channel"], record["provider"]) == ("rcs", "rbm")
    assert record["provider_message_id"] == message["message_id"]
    assert {"sent", "delivered", "read"} <= {h["status"] for h in record["history"]}


async def test_rich_card_goes_out_as_a_standalone_card_and_capability_is_cached(stack: Stack) -> None:
    phone = unique_phone()
    card = {
        "title": "Your order has shipped",
        "media_url": "https://example.com/parcel.png",
        "suggestions": [
            {"text": "Reschedule", "postback_data": "reschedule_delivery"},
            {"text": "Track parcel", "postback_data": "track", "url": "https://example.com/track/1042"},
        ],
    }
    body = "Order 1042 is on its way and arrives Thursday."
    first = await _send(stack, {"to": {"phone": phone}, "body": body, "channel": "rcs", "rich_card": card})
    await eventually(lambda: _record(stack, first, "read"))
    second = await _send(stack, {"to": {"phone": phone}, "body": "Second", "channel": "rcs"})
    await eventually(lambda: _record(stack, second, "read"))
    seen = await stack.simulator("GET", "/simulator/rcs/messages", params={"to": phone})
    assert seen["capability_checks"] == 1
    sent_card = {k: v for k, v in seen["messages"][0].items() if k == "contentMessage"}
    assert sent_card == fixture("rcs", "agent_message_rich_card")


async def test_not_capable_phone_gets_the_card_adapted_to_sms(stack: Stack) -> None:
    phone = unique_phone()
    await stack.simulator("POST", "/simulator/rcs/capable", json={"phone": phone, "capable": False})
    description = "Order 1042 left our warehouse this morning and travels overnight with our carrier. " * 6
    card = {
        "title": "Your order has shipped",
        "description": description,
        "suggestions": [{"text": "Track", "url": "https://example.com/track/1042"}],
    }
    message_id = await _send(
        stack, {"to": {"phone": phone}, "body": "Shipped", "channel": "rcs", "rich_card": card}
    )
    (sms,) = await eventually(lambda: stack.sent_to(phone))
    assert sms["body"].startswith("Your order has shipped\nOrder 1042 left our warehouse")
    assert sms["body"].endswith("...\nhttps://example.com/track/1042")
    assert segment_count(sms["body"]) <= stack.config.rbm.sms_fallback_max_segments
    record = await eventually(lambda: _record(stack, message_id, "delivered"))
    assert (record["channel"], record["fallback_from"], record["fallback_reason"]) == (
        "sms",
        "rcs",
        "rcs_not_capable",
    )
    assert (record["provider"], record["provider_message_id"]) == ("twilio", sms["sid"])
    assert record["body"] == sms["body"] and record["segments"] == segment_count(sms["body"])
    assert record["rich_card"]["title"] == "Your order has shipped"
    rbm = await stack.simulator("GET", "/simulator/rcs/messages", params={"to": phone})
    assert rbm["messages"] == []
    customer_id = await stack.customer_id(phone)
    assert customer_id is not None
    (entry,) = await eventually(lambda: _messages(stack, customer_id))
    assert (entry["channel"], entry["fallback_from"]) == ("sms", "rcs")


async def test_send_404_despite_capability_falls_back_and_remembers(stack: Stack) -> None:
    phone = unique_phone()
    await stack.simulator(
        "POST", "/simulator/rcs/capable", json={"phone": phone, "capable": True, "reachable": False}
    )
    first = await _send(stack, {"to": {"phone": phone}, "body": "Your code is 4417", "channel": "rcs"})
    record = await eventually(lambda: _record(stack, first, "delivered"))
    assert (record["channel"], record["fallback_reason"], record["body"]) == (
        "sms",
        "rcs_not_capable",
        "Your code is 4417",
    )
    second = await _send(stack, {"to": {"phone": phone}, "body": "Your code is 9020", "channel": "rcs"})
    await eventually(lambda: _record(stack, second, "delivered"))
    assert [m["body"] for m in await stack.sent_to(phone)] == ["Your code is 4417", "Your code is 9020"]
    seen = await stack.simulator("GET", "/simulator/rcs/messages", params={"to": phone})
    # The 404 was cached as "not capable": the second send asked RBM nothing.
    assert seen["capability_checks"] == 1 and seen["messages"] == []


async def test_simulated_user_tap_and_file_reach_the_thread(stack: Stack) -> None:
    phone = unique_phone()
    tap = await stack.simulator(
        "POST",
        "/simulator/rcs/inbound",
        json={"from": phone, "suggestion": {"text": "Track parcel", "postback_data": "track"}},
    )
    assert tap["gateway_status"] == 200
    photo = "https://rcs-user-content-us.storage.googleapis.com/files/abc"
    await stack.simulator("POST", "/simulator/rcs/inbound", json={"from": phone, "file": {"url": photo}})
    customer_id = await eventually(lambda: stack.customer_id(phone))
    reply, file = await eventually(lambda: _messages(stack, customer_id, 2))
    assert (reply["body"], reply["attributes"]["postback_data"]) == ("Track parcel", "track")
    assert file["media"] == [{"url": photo, "content_type": "image/jpeg"}]


async def test_rich_card_needs_the_rcs_channel(stack: Stack) -> None:
    card = {"title": "Sale"}
    status, body = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": unique_phone()}, "body": "x", "rich_card": card}
    )
    assert (status, body["error"]["field"]) == (422, "rich_card")
    status, body = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": unique_phone()}, "body": "x", "channel": "rcs", "rich_card": {}},
    )
    assert (status, body["error"]["field"]) == (422, "rich_card")
    status, body = await stack.api(
        "POST",
        "/v1/messages",
        json={
            "to": {"phone": unique_phone()},
            "body": "x",
            "channel": "rcs",
            "rich_card": {"title": "t", "suggestions": [{"text": "a very long suggestion label"}]},
        },
    )
    assert status == 422 and body["error"]["field"] == "rich_card.suggestions[0].text"
