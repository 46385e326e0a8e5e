"""The hosted preference page: signed links, tamper and expiry checks, and saving choices."""

from __future__ import annotations

import time
import uuid

from conversations.tokens import Claims, sign
from tests.support.stack import Stack, unique_phone


async def _customer(stack: Stack) -> str:
    _, body = await stack.api(
        "PUT", f"/v1/customers/p-{uuid.uuid4().hex[:10]}", json={"identifiers": {"phone": unique_phone()}}
    )
    return body["customer"]["id"]


def _path(url: str) -> str:
    return url.split("/preferences/", 1)[1]


async def test_link_renders_the_page_and_saving_records_consent(stack: Stack) -> None:
    customer_id = await _customer(stack)
    status, link = await stack.api("POST", f"/v1/customers/{customer_id}/preference-link")
    assert status == 201 and link["url"].startswith(stack.config.public_url + "/preferences/")
    assert link["expires_at"] > time.time() + 3600
    token = _path(link["url"])
    async with stack.http.get(f"{stack.gateway_url}/preferences/{token}") as response:
        assert response.status == 200 and response.content_type == "text/html"
        page = await response.text()
    assert "How would you like to hear from us?" in page
    assert 'name="allow:marketing" value="sms"' in page
    # The customer keeps marketing on email and WhatsApp only, WhatsApp first for service.
    form = [("allow:marketing", "email"), ("allow:marketing", "whatsapp"), ("first:service", "whatsapp")]
    for message_type in ("transactional", "service", "rich_media", "urgent"):
        form += [(f"allow:{message_type}", c) for c in ("sms", "whatsapp", "rcs", "voice", "email")]
    async with stack.http.post(f"{stack.gateway_url}/preferences/{token}", data=form) as response:
        assert response.status == 200
        assert "Saved." in await response.text()
    _, prefs = await stack.api("GET", f"/v1/customers/{customer_id}/preferences")
    marketing = prefs["preferences"]["by_type"]["marketing"]
    assert marketing["opted_out"] == ["rcs", "sms", "voice"]
    assert prefs["preferences"]["by_type"]["service"] == {"order": ["whatsapp"]}
    _, log = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    assert {(c["channel"], c["source"]) for c in log["data"]} == {
        ("rcs", "preference_page"),
        ("sms", "preference_page"),
        ("voice", "preference_page"),
    }


async def test_tampered_link_is_403_and_expired_link_is_410(stack: Stack) -> None:
    customer_id = await _customer(stack)
    _, link = await stack.api("POST", f"/v1/customers/{customer_id}/preference-link")
    token = _path(link["url"])
    payload, mac = token.split(".")
    forged_for_other = sign("not-our-secret", "preferences", Claims(customer_id, time.time() + 60))
    for bad in (payload + "A." + mac, payload + "." + mac[:-2] + "xx", forged_for_other, "garbage"):
        async with stack.http.get(f"{stack.gateway_url}/preferences/{bad}") as response:
            assert response.status == 403, bad
            assert (await response.json())["error"]["code"] == "link_invalid"
    expired = sign(stack.config.secret_key, "preferences", Claims(customer_id, time.time() - 1))
    async with stack.http.get(f"{stack.gateway_url}/preferences/{expired}") as response:
        assert response.status == 410
        assert (await response.json())["error"]["code"] == "link_expired"
    # A token signed for another purpose (e.g. a tracking link) does not open the page.
    other_purpose = sign(stack.config.secret_key, "click", Claims(customer_id, time.time() + 60))
    async with stack.http.post(f"{stack.gateway_url}/preferences/{other_purpose}", data={}) as response:
        assert response.status == 403


async def test_saving_unchanged_choices_adds_nothing_to_the_consent_log(stack: Stack) -> None:
    """The page is unauthenticated beyond its link: replaying a post must not grow the audit log."""
    customer_id = await _customer(stack)
    _, link = await stack.api("POST", f"/v1/customers/{customer_id}/preference-link")
    url = f"{stack.gateway_url}/preferences/{_path(link['url'])}"
    form = [("allow:marketing", "email")]
    for _ in range(3):
        async with stack.http.post(url, data=form) as response:
            assert response.status == 200
    _, log = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    opted_out = len(stack.config.message_types) * 5 - 1  # every channel of every type but one
    assert len(log["data"]) == opted_out
