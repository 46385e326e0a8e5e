"""Open and click tracking: signed tokens, a recorded engagement on the thread, a 302, never an open redirect."""

from __future__ import annotations

import re

import pytest

from channels.tracking import InvalidToken, LinkTracker, TrackedLink
from tests.support.email import customer_by_email, mail_to, message_record, unique_email
from tests.support.stack import Stack, eventually, unique_phone

LINK = "https://shop.example.com/orders/1042?utm_source=email&x=1"
_HREF = re.compile(r'href="([^"]+)"')
_PIXEL = re.compile(r'<img src="([^"]+\.gif)"')


def test_text_links_are_rewritten_and_trailing_punctuation_kept() -> None:
    tracker = LinkTracker("k", "https://tl.example.com")
    text = tracker.rewrite_text(
        "See https://a.example.com/x?y=1. Or (https://b.example.com)!", "msg_1", "cus_0_1"
    )
    links = re.findall(r"https://tl\.example\.com/t/[A-Za-z0-9_-]+", text)
    assert len(links) == 2
    assert text.endswith(")!") and ". Or (" in text
    assert [tracker.verify(link.rsplit("/", 1)[1]).url for link in links] == [
        "https://a.example.com/x?y=1",
        "https://b.example.com",
    ]


def test_tokens_from_another_key_or_altered_are_refused() -> None:
    ours, theirs = LinkTracker("ours", "https://tl"), LinkTracker("theirs", "https://tl")
    forged = theirs.token(TrackedLink(1, "c", "msg_1", "cus_0_1", "https://evil.example.com"))
    with pytest.raises(InvalidToken):
        ours.verify(forged)
    token = ours.token(TrackedLink(1, "c", "msg_1", "cus_0_1", "https://shop.example.com"))
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    for bad in (flipped, token[:-1], "", "%%%", token + "AA"):
        with pytest.raises(InvalidToken):
            ours.verify(bad)
    # Even a token we signed never leads outside http(s).
    javascript = ours.token(TrackedLink(1, "c", "msg_1", "cus_0_1", "javascript:alert(1)"))
    with pytest.raises(InvalidToken):
        ours.verify(javascript)


async def _send_tracked_email(stack: Stack) -> tuple[str, str, dict]:
    address = unique_email()
    status, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={
            "to": {"email": address},
            "template": {
                "kind": "cart_abandoned",
                "variables": {"customer_name": "Ann", "item_count": 2, "cart_url": LINK},
            },
        },
    )
    assert status == 202, accepted
    (mail,) = await eventually(lambda: mail_to(stack, address))
    return address, accepted["id"], mail


async def _engagements(stack: Stack, customer_id: str, count: int) -> list | None:
    entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "engagement"]
    return entries if len(entries) >= count else None


async def test_email_links_are_tracked_and_a_click_is_recorded_then_redirected(stack: Stack) -> None:
    address, message_id, mail = await _send_tracked_email(stack)
    (href,) = _HREF.findall(mail["html"])
    assert href.startswith(stack.config.public_url + "/t/")
    assert LINK not in mail["html"] and LINK not in mail["text"]  # both parts carry the tracked link
    assert href in mail["text"].replace("&amp;", "&")

    async with stack.http.get(
        stack.gateway_url + href.removeprefix(stack.config.public_url), allow_redirects=False
    ) as response:
        assert response.status == 302
        assert response.headers["Location"] == LINK

    customer_id = await customer_by_email(stack, address)
    assert customer_id is not None
    (click,) = await eventually(lambda: _engagements(stack, customer_id, 1))
    assert (click["engagement"], click["url"], click["message_id"]) == ("clicked", LINK, message_id)
    assert click["channel"] == "email"
    record = await message_record(stack, message_id)
    assert record is not None and record["clicks"] == 1 and record["opened_at"] is not None


async def test_open_pixel_is_a_gif_and_records_one_open(stack: Stack) -> None:
    address, message_id, mail = await _send_tracked_email(stack)
    (pixel,) = _PIXEL.findall(mail["html"])
    path = pixel.removeprefix(stack.config.public_url)
    assert path.startswith("/t/o/")
    for _ in range(2):  # mail clients load images more than once
        async with stack.http.get(stack.gateway_url + path) as response:
            assert response.status == 200
            assert response.content_type == "image/gif"
            assert (await response.read()).startswith(b"GIF89a")
    customer_id = await customer_by_email(stack, address)
    assert customer_id is not None
    (opened,) = await eventually(lambda: _engagements(stack, customer_id, 1))
    assert opened["engagement"] == "opened" and opened["message_id"] == message_id
    # a click afterwards is the second engagement, never a second open
    (href,) = _HREF.findall(mail["html"])
    async with stack.http.get(
        stack.gateway_url + href.removeprefix(stack.config.public_url), allow_redirects=False
    ):
        pass
    entries = await eventually(lambda: _engagements(stack, customer_id, 2))
    assert [e["engagement"] for e in entries] == ["opened", "clicked"]


async def test_tampered_token_is_403_json_and_records_nothing(stack: Stack) -> None:
    _, message_id, mail = await _send_tracked_email(stack)
    (href,) = _HREF.findall(mail["html"])
    token = href.rsplit("/", 1)[1]
    tampered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    (pixel,) = _PIXEL.findall(mail["html"])
    open_token = pixel.rsplit("/", 1)[1].removesuffix(".gif")
    for path in (f"/t/{tampered}", f"/t/{open_token}", f"/t/o/{token}.gif", "/t/not-a-token"):
        async with stack.http.get(stack.gateway_url + path, allow_redirects=False) as response:
            assert response.status == 403, path
            assert response.content_type == "application/json"
            assert (await response.json())["error"]["code"] == "invalid_token"
            assert "Location" not in response.headers
    record = await message_record(stack, message_id)
    assert record is not None and record["clicks"] == 0 and record["opened_at"] is None


async def test_sms_links_are_tracked_when_asked(stack: Stack) -> None:
    phone = unique_phone()
    status, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"phone": phone}, "channel": "sms", "body": f"Your cart: {LINK}", "track": True},
    )
    assert status == 202, accepted
    (sent,) = await eventually(lambda: stack.sent_to(phone))
    assert sent["body"].startswith(f"Your cart: {stack.config.public_url}/t/")
    path = sent["body"].removeprefix("Your cart: ").removeprefix(stack.config.public_url)
    async with stack.http.get(stack.gateway_url + path, allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == LINK
    record = await eventually(lambda: _clicked(stack, accepted["id"]))
    assert record["body"] == sent["body"]  # the thread shows what the customer received
    assert record["segments"] == 2 and record["encoding"] == "GSM-7"  # the tracked link is long


async def _clicked(stack: Stack, message_id: str) -> dict | None:
    record = await message_record(stack, message_id)
    return record if record and record["clicks"] == 1 else None


async def test_replayed_clicks_count_once_per_message_and_window(stack: Stack) -> None:
    """A tracked link is public: replaying it must not add a thread entry per request."""
    address, message_id, mail = await _send_tracked_email(stack)
    (href,) = _HREF.findall(mail["html"])
    for _ in range(5):
        async with stack.http.get(
            stack.gateway_url + href.removeprefix(stack.config.public_url), allow_redirects=False
        ) as response:
            assert response.status == 302  # every visitor still gets where the link goes
    (pixel,) = _PIXEL.findall(mail["html"])
    async with stack.http.get(stack.gateway_url + pixel.removeprefix(stack.config.public_url)):
        pass
    customer_id = await customer_by_email(stack, address)
    assert customer_id is not None
    # The open went in after the clicks on the same shard stream: once it shows, so have they.
    entries = await eventually(lambda: _engagements_until_open(stack, customer_id))
    assert [e["engagement"] for e in entries] == ["clicked", "opened"]
    record = await message_record(stack, message_id)
    assert record is not None and record["clicks"] == 1


async def _engagements_until_open(stack: Stack, customer_id: str) -> list | None:
    entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "engagement"]
    return entries if any(e["engagement"] == "opened" for e in entries) else None
