"""Email: SMTP out through the simulator's sink, SendGrid Inbound Parse in, one thread per address."""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.support.email import (
    customer_by_email,
    mail_to,
    message_record,
    post_inbound_email,
    sendgrid_fixture,
    unique_email,
)
from tests.support.stack import Stack, eventually, unique_phone
from tests.support.whatsapp import customer_hash

SHIPPED = {
    "customer_name": "Ann",
    "order_id": "1042",
    "carrier": "UPS",
    "tracking_url": "https://track.example.com/1Z999?ref=mail&lang=en",
}


async def _status(stack: Stack, message_id: str, wanted: str) -> dict | None:
    record = await message_record(stack, message_id)
    return record if record and record["status"] == wanted else None


async def test_templated_email_reaches_the_smtp_sink_with_both_parts(stack: Stack) -> None:
    address = unique_email()
    status, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={
            "to": {"email": address.upper()},  # normalised to lower case
            "template": {"kind": "order_shipped", "variables": SHIPPED},
            "track": False,
        },
    )
    assert status == 202, accepted
    message_id = accepted["id"]

    (mail,) = await eventually(lambda: mail_to(stack, address))
    assert mail["rcpt_tos"] == [address]
    assert mail["from"] == stack.config.email.from_address
    assert mail["subject"] == "Your order 1042 has shipped"
    assert mail["content_type"] == "multipart/alternative"
    assert (
        mail["message_id"] == f"<{message_id}-1@tests.threadline.local>"
    )  # the first attempt carries the message
    assert mail["headers"]["X-Threadline-Message-Id"] == f"{message_id}-1"
    assert "Track your package: https://track.example.com/1Z999?ref=mail&lang=en" in mail["text"]
    assert 'href="https://track.example.com/1Z999?ref=mail&amp;lang=en"' in mail["html"]
    assert "<strong>1042</strong>" in mail["html"]

    # SMTP has no delivery receipts: accepted by the server is "sent", and that is final.
    record = await eventually(lambda: _status(stack, message_id, "sent"))
    assert record["channel"] == "email"
    assert record["provider"] == "smtp"
    assert record["provider_message_id"] == f"{message_id}-1@tests.threadline.local"
    assert record["subject"] == "Your order 1042 has shipped"
    assert record["template_kind"] == "order_shipped"
    assert record["segments"] == 0
    assert record["cost"] == pytest.approx(0.0001)

    customer_id = await customer_by_email(stack, address)
    assert customer_id is not None
    entries = (await stack.thread(customer_id))["entries"]
    assert entries[0]["kind"] == "message" and entries[0]["channel"] == "email"
    assert entries[0]["subject"] == "Your order 1042 has shipped"


async def test_free_form_email_needs_a_subject_and_gets_html(stack: Stack) -> None:
    address = unique_email()
    status, body = await stack.api("POST", "/v1/messages", json={"to": {"email": address}, "body": "Hi"})
    assert status == 422, body
    assert (body["error"]["code"], body["error"]["field"]) == ("template_variable_missing", "subject")

    status, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={"to": {"email": address}, "body": "Hello <Ann>,\n\nsee you soon", "subject": "Hi there"},
    )
    assert status == 202, accepted
    (mail,) = await eventually(lambda: mail_to(stack, address))
    assert mail["subject"] == "Hi there"
    assert mail["text"].strip() == "Hello <Ann>,\n\nsee you soon"
    assert "<p>Hello &lt;Ann&gt;,</p>" in mail["html"]


@pytest.mark.parametrize(
    "to, code, field",
    [
        ({"email": "not-an-address"}, "invalid_identifier", "to.email"),
        ({"email": "ann@@example.com"}, "invalid_identifier", "to.email"),
        ({"email": "ann@example"}, "invalid_identifier", "to.email"),
        ({"email": "a@example.com", "phone": "+14155550100"}, "validation_failed", "to"),
        ({}, "validation_failed", "to"),
    ],
)
async def test_bad_email_recipients_are_named(stack: Stack, to: dict, code: str, field: str) -> None:
    status, body = await stack.api("POST", "/v1/messages", json={"to": to, "body": "x", "subject": "s"})
    assert status == 422, body
    assert (body["error"]["code"], body["error"]["field"]) == (code, field)


async def test_email_channel_needs_an_email_address(stack: Stack) -> None:
    status, body = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": unique_phone()}, "body": "x", "channel": "email"}
    )
    assert status == 422 and body["error"]["field"] == "channel"


async def test_smtp_5xx_is_final_and_4xx_is_retried(stack: Stack) -> None:
    refused, greylisted = unique_email("refused"), unique_email("grey")
    await stack.simulator("POST", "/simulator/email/fail", json={"to": refused, "code": 550})
    await stack.simulator(
        "POST", "/simulator/email/fail", json={"to": greylisted, "code": 451, "message": "4.7.1 Try later"}
    )
    ids = {}
    for address in (refused, greylisted):
        _, accepted = await stack.api(
            "POST", "/v1/messages", json={"to": {"email": address}, "body": "x", "subject": "s"}
        )
        ids[address] = accepted["id"]

    failed = await eventually(lambda: _status(stack, ids[refused], "failed"), timeout=20)
    assert failed["error_code"] == "550"
    assert "Mailbox unavailable" in failed["error_message"]
    assert await mail_to(stack, refused) == []

    await eventually(lambda: _status(stack, ids[greylisted], "sent"), timeout=20)
    assert len(await mail_to(stack, greylisted)) == 1


async def test_inbound_parse_fixture_lands_in_the_customers_thread(stack: Stack) -> None:
    sender = f"Ann.Example.{uuid.uuid4().hex[:8]}@Example.com"
    response = await post_inbound_email(stack, sendgrid_fixture(sender, f"{uuid.uuid4().hex}@mail.gmail.com"))
    assert response.status == 200, await response.text()

    customer_id = await eventually(lambda: customer_by_email(stack, sender.lower()))
    (entry,) = (await stack.thread(customer_id))["entries"]
    assert entry["kind"] == "message" and entry["direction"] == "inbound"
    assert entry["channel"] == "email"
    assert entry["address"] == sender.lower()
    assert entry["subject"] == "Re: Your order 1042 has shipped"
    assert entry["body"].startswith('Hi,\n\nThe tracking link says "label created" since Monday.')
    assert entry["provider"] == "sendgrid"
    customer = (await stack.api("GET", f"/v1/customers/{customer_id}"))[1]
    assert {"kind": "email", "value": sender.lower()} in customer["identifiers"]


async def test_the_same_message_id_twice_is_one_entry(stack: Stack) -> None:
    sender = unique_email()
    body = sendgrid_fixture(sender, f"{uuid.uuid4().hex}@mail.gmail.com")
    for _ in range(2):  # SendGrid retries a post it thinks failed
        assert (await post_inbound_email(stack, body)).status == 200
    later = sendgrid_fixture(sender, f"{uuid.uuid4().hex}@mail.gmail.com")
    assert (await post_inbound_email(stack, later)).status == 200

    customer_id = await eventually(lambda: customer_by_email(stack, sender))

    async def two() -> list | None:
        entries = (await stack.thread(customer_id))["entries"]
        return entries if len(entries) >= 2 else None

    entries = await eventually(two)
    assert len(entries) == 2


async def test_basic_auth_secret_is_accepted(stack: Stack) -> None:
    sender = unique_email()
    token = base64.b64encode(f"parse:{stack.config.email.inbound_secret}".encode()).decode()
    response = await post_inbound_email(
        stack,
        sendgrid_fixture(sender, f"{uuid.uuid4().hex}@x"),
        secret=None,
        headers={"Authorization": f"Basic {token}"},
    )
    assert response.status == 200
    await eventually(lambda: customer_by_email(stack, sender))


async def test_wrong_or_missing_secret_is_403_and_stores_nothing(stack: Stack) -> None:
    sender = unique_email()
    body = sendgrid_fixture(sender, f"{uuid.uuid4().hex}@mail.gmail.com")
    wrong = await post_inbound_email(stack, body, secret="guess")
    missing = await post_inbound_email(stack, body, secret=None)
    for response, code in ((wrong, "secret_invalid"), (missing, "secret_missing")):
        assert response.status == 403
        assert (await response.json())["error"]["code"] == code
    # Let the shards run, then check nothing exists for this address.
    marker = unique_email("marker")
    assert (await post_inbound_email(stack, sendgrid_fixture(marker, f"{uuid.uuid4().hex}@m"))).status == 200
    await eventually(lambda: customer_by_email(stack, marker))
    assert await customer_by_email(stack, sender) is None


async def test_simulated_customer_email_round_trip(stack: Stack) -> None:
    """The simulator's inbound email speaks the same SendGrid format as the fixture."""
    sender = unique_email()
    result = await stack.simulator(
        "POST",
        "/simulator/email/inbound",
        json={"from": f"Ann <{sender}>", "subject": "Question", "text": "Do you ship to Canada?"},
    )
    assert result["gateway_status"] == 200
    customer_id = await eventually(lambda: customer_by_email(stack, sender))
    _, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"email": sender}, "body": "We do!", "subject": "Re: Question"}
    )

    async def both() -> list | None:
        entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "message"]
        return entries if len(entries) == 2 else None

    inbound, outbound = await eventually(both)
    assert (inbound["direction"], inbound["body"], inbound["subject"]) == (
        "inbound",
        "Do you ship to Canada?",
        "Question",
    )
    assert (outbound["direction"], outbound["message_id"]) == ("outbound", accepted["id"])


async def _inbound_email(stack: Stack, **script: str) -> None:
    result = await stack.simulator("POST", "/simulator/email/inbound", json={"subject": "Hi", **script})
    assert result["gateway_status"] == 200


async def _emails(stack: Stack, customer_id: str, count: int) -> list | None:
    entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "message"]
    return entries if len(entries) >= count else None


async def test_an_email_no_check_vouches_for_is_marked_and_renames_nobody(stack: Stack) -> None:
    sender = unique_email()
    await _inbound_email(stack, **{"from": f"Ann Real <{sender}>", "text": "Hello"})
    customer_id = await eventually(lambda: customer_by_email(stack, sender))
    await _inbound_email(
        stack,
        **{
            "from": f"Mallory <{sender}>",
            "text": "STOP",
            "spf": "fail",
            "dkim": "{@attacker.example : pass}",
        },
    )
    genuine, forged = await eventually(lambda: _emails(stack, customer_id, 2))
    assert "verification" not in genuine.get("attributes", {})
    assert (forged["body"], forged["attributes"]["verification"]) == ("STOP", "unverified")
    assert (await customer_hash(stack, customer_id))["profile_name"] == "Ann Real"
    _, consent = await stack.api("GET", f"/v1/customers/{customer_id}/consent")
    assert consent["data"] == []  # nor does it opt anyone out


async def test_an_email_display_name_never_replaces_a_profile_name(stack: Stack) -> None:
    sender = unique_email()
    await _inbound_email(stack, **{"from": f"Ann First <{sender}>", "text": "one"})
    customer_id = await eventually(lambda: customer_by_email(stack, sender))
    await _inbound_email(stack, **{"from": f"Someone Else <{sender}>", "text": "two"})
    await eventually(lambda: _emails(stack, customer_id, 2))
    assert (await customer_hash(stack, customer_id))["profile_name"] == "Ann First"
