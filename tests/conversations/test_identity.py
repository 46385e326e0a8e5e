"""One person, one customer: identifiers are normalised, linked by upsert, and never stolen."""

from __future__ import annotations

import uuid

from tests.support.stack import Stack, eventually, twilio_inbound_form, unique_phone


def _external() -> str:
    return "user-" + uuid.uuid4().hex[:10]


async def test_upsert_links_identifiers_and_inbound_joins_the_same_customer(stack: Stack) -> None:
    phone, external = unique_phone(), _external()
    email = f"Ada.{uuid.uuid4().hex[:6]}@Example.COM"
    status, body = await stack.api(
        "PUT",
        f"/v1/customers/{external}",
        json={
            "identifiers": {"phone": phone, "email": email, "wa_id": phone[1:]},
            "attributes": {
                "name": "Ada",
                "timezone": "Europe/London",
                "lifecycle_stage": "paying",
                "custom": {"plan": "pro"},
            },
        },
    )
    assert status == 201, body
    customer = body["customer"]
    assert body["created"] is True
    kinds = {i["kind"]: i["value"] for i in customer["identifiers"]}
    assert kinds == {"external_id": external, "phone": phone, "email": email.lower(), "wa_id": phone[1:]}
    assert customer["attributes"] == {
        "name": "Ada",
        "timezone": "Europe/London",
        "lifecycle_stage": "paying",
        "custom": {"plan": "pro"},
    }

    for query in (
        {"email": email.upper()},
        {"external_id": external},
        {"wa_id": phone[1:]},
        {"phone": phone},
    ):
        status, found = await stack.api("GET", "/v1/customers", params=query)
        assert status == 200 and [c["id"] for c in found["data"]] == [customer["id"]], query

    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "hello from my phone"))

    async def thread() -> list | None:
        entries = (await stack.thread(customer["id"]))["entries"]
        return entries or None

    (entry,) = await eventually(thread)
    assert entry["body"] == "hello from my phone"


async def test_upsert_again_updates_attributes_and_links_a_customer_created_by_sms(stack: Stack) -> None:
    phone, external = unique_phone(), _external()
    await stack.post_twilio("/webhooks/twilio/sms", twilio_inbound_form(phone, "first contact"))
    sms_customer = await eventually(lambda: stack.customer_id(phone))
    status, body = await stack.api(
        "PUT",
        f"/v1/customers/{external}",
        json={"identifiers": {"phone": phone}, "attributes": {"name": "Bo"}},
    )
    assert status == 200, body
    assert body["created"] is False and body["customer"]["id"] == sms_customer
    status, body = await stack.api(
        "PUT", f"/v1/customers/{external}", json={"attributes": {"name": "Bob", "locale": "en-GB"}}
    )
    assert status == 200 and body["customer"]["attributes"] == {"name": "Bob", "locale": "en-GB"}


async def test_claiming_an_identifier_owned_by_someone_else_is_409_with_both_ids(stack: Stack) -> None:
    phone_a, phone_b = unique_phone(), unique_phone()
    _, a = await stack.api("PUT", f"/v1/customers/{_external()}", json={"identifiers": {"phone": phone_a}})
    email_b = f"b-{uuid.uuid4().hex[:6]}@example.com"
    _, b = await stack.api(
        "PUT", f"/v1/customers/{_external()}", json={"identifiers": {"phone": phone_b, "email": email_b}}
    )
    # Another backend user claiming A's phone: refused, A keeps it.
    status, body = await stack.api(
        "PUT", f"/v1/customers/{_external()}", json={"identifiers": {"phone": phone_a}}
    )
    assert status == 409, body
    assert body["error"]["field"] == "identifiers.phone"
    assert body["error"]["details"]["customer_ids"] == [a["customer"]["id"]]
    # One upsert naming identifiers of two different customers: refused with both ids.
    status, body = await stack.api(
        "PUT", f"/v1/customers/{_external()}", json={"identifiers": {"phone": phone_a, "email": email_b}}
    )
    assert status == 409, body
    assert body["error"]["code"] == "identifier_conflict"
    assert sorted(body["error"]["details"]["customer_ids"]) == sorted(
        [a["customer"]["id"], b["customer"]["id"]]
    )
    # Nothing moved: each phone still finds its own customer.
    assert await stack.customer_id(phone_b) == b["customer"]["id"]


async def test_bad_identifiers_and_attributes_are_422_naming_the_field(stack: Stack) -> None:
    cases = [
        ({"identifiers": {"email": "not-an-email"}}, "identifiers.email"),
        ({"identifiers": {"phone": "12"}}, "identifiers.phone"),
        ({"attributes": {"timezone": "Mars/Olympus"}}, "attributes.timezone"),
        ({"attributes": {"lifecycle_stage": "vip"}}, "attributes.lifecycle_stage"),
        ({"identifiers": {"fax": "1"}}, "identifiers.fax"),
    ]
    for body, field in cases:
        status, reply = await stack.api("PUT", f"/v1/customers/{_external()}", json=body)
        assert status == 422, (body, reply)
        assert reply["error"]["field"] == field
    status, reply = await stack.api("PUT", "/v1/customers/bad%20id", json={})
    assert status == 422 and reply["error"]["field"] == "external_id"
    status, reply = await stack.api("GET", "/v1/customers", params={"email": "nope"})
    assert status == 422 and reply["error"]["field"] == "email"
