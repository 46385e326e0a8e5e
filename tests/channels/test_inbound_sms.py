"""A signed inbound SMS lands once, in order, in the customer's one thread."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qsl, quote

from channels.twilio_signature import compute_signature
from tests.support.fixtures import fixture_bytes, fixture_form
from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone


async def test_signed_sms_is_answered_with_twiml_and_lands_in_the_thread(stack: Stack) -> None:
    phone = unique_phone()
    response = await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "Hello there"))
    assert response.status == 200
    assert response.content_type == "text/xml"
    assert "<Response/>" in await response.text()

    customer_id = await eventually(lambda: stack.customer_id(phone))
    thread = await eventually(lambda: _entries(stack, customer_id))
    (entry,) = thread
    assert entry["kind"] == "message"
    assert entry["direction"] == "inbound"
    assert entry["channel"] == "sms"
    assert entry["body"] == "Hello there"
    assert entry["status"] == "received"
    assert entry["provider"] == "twilio"
    assert entry["provider_message_id"].startswith("SM")
    assert entry["address"] == phone


async def test_numbers_are_normalised_to_one_customer(stack: Stack) -> None:
    phone = unique_phone()
    national = f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "one"))
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(national, "two"))
    customer_id = await eventually(lambda: stack.customer_id(phone))
    assert await stack.customer_id(national) == customer_id
    entries = await eventually(lambda: _entries(stack, customer_id, at_least=2))
    assert [e["body"] for e in entries] == ["one", "two"]


async def test_forged_or_missing_signature_is_403_and_stores_nothing(stack: Stack) -> None:
    phone = unique_phone()
    form = twilio_inbound_form(phone, "forged")
    forged = await stack.post_twilio("/webhooks/twilio/sms", form, signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    missing = await stack.post_twilio("/webhooks/twilio/sms", form, signature=None)
    for response, code in ((forged, "signature_invalid"), (missing, "signature_missing")):
        assert response.status == 403
        body = await response.json()
        assert body["error"]["code"] == code
    # A tampered body under a signature made for the original is refused too.
    good = await stack.post_twilio(
        "/webhooks/twilio/sms", twilio_inbound_form(phone, "original"), signature=None
    )
    assert good.status == 403
    # Let the shards run a few batches, then check nothing exists for this number.
    marker = unique_phone()
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(marker, "marker"))
    await eventually(lambda: stack.customer_id(marker))
    assert await stack.customer_id(phone) is None


async def test_same_message_sid_twice_is_one_thread_entry(stack: Stack) -> None:
    phone = unique_phone()
    sid = "SM" + uuid.uuid4().hex
    for _ in range(3):  # Twilio retries a webhook it thinks failed
        response = await stack.post_twilio(
            "/webhooks/twilio/sms", twilio_inbound_form(phone, "retry me", sid=sid)
        )
        assert response.status == 200
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "after"))
    customer_id = await eventually(lambda: stack.customer_id(phone))
    entries = await eventually(lambda: _entries(stack, customer_id, at_least=2))
    assert [e["body"] for e in entries] == ["retry me", "after"]


async def test_mms_media_urls_are_kept(stack: Stack) -> None:
    phone = unique_phone()
    form = twilio_inbound_form(
        phone,
        "look",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2",
        MediaContentType1="image/png",
    )
    assert (await stack.post_twilio("/webhooks/twilio/sms", form)).status == 200
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (entry,) = await eventually(lambda: _entries(stack, customer_id))
    assert [m["content_type"] for m in entry["media"]] == ["image/jpeg", "image/png"]
    assert entry["media"][1]["url"].endswith("/ME2")


async def test_a_captured_unicode_body_lands_verbatim_through_the_gateway(stack: Stack) -> None:
    """The fixture's exact bytes (percent-encoded UTF-8, "+" for spaces) posted to the gateway."""
    phone, sid = unique_phone(), "SM" + uuid.uuid4().hex
    raw = fixture_bytes("sms", "inbound_unicode", ".form")
    captured = fixture_form("sms", "inbound_unicode")
    raw = raw.replace(quote(captured["From"], safe="").encode(), quote(phone, safe="").encode())
    raw = raw.replace(captured["MessageSid"].encode(), sid.encode())
    path = "/webhooks/twilio/sms"
    params = parse_qsl(raw.decode("ascii"), keep_blank_values=True)
    signature = compute_signature(stack.config.twilio.auth_token, stack.config.public_url + path, params)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    async with stack.http.post(stack.gateway_url + path, data=raw, headers=headers) as response:
        assert response.status == 200, await response.text()
    customer_id = await eventually(lambda: stack.customer_id(phone))
    (entry,) = await eventually(lambda: _entries(stack, customer_id))
    assert (entry["body"], entry["provider_message_id"]) == (captured["Body"], sid)


async def test_thread_pages_with_a_cursor(stack: Stack) -> None:
    phone = unique_phone()
    for i in range(5):
        await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, f"m{i}"))
    customer_id = await eventually(lambda: stack.customer_id(phone))
    await eventually(lambda: _entries(stack, customer_id, at_least=5))
    first = await stack.thread(customer_id, limit="2")
    second = await stack.thread(customer_id, limit="2", cursor=first["next_cursor"])
    third = await stack.thread(customer_id, limit="2", cursor=second["next_cursor"])
    bodies = [e["body"] for page in (first, second, third) for e in page["entries"]]
    assert bodies == ["m0", "m1", "m2", "m3", "m4"]
    assert third.get("next_cursor") is None


async def _entries(stack: Stack, customer_id: str, at_least: int = 1) -> list[dict] | None:
    entries = (await stack.thread(customer_id))["entries"]
    return entries if len(entries) >= at_least else None
