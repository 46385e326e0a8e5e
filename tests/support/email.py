"""Helpers for the email tests: unique addresses, the SMTP sink, SendGrid inbound posts."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp

from tests.support.stack import EMAIL_INBOUND_SECRET, Stack

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "email"
FIXTURE_SENDER = b"Ann.Example@Example.com"
FIXTURE_ENVELOPE_SENDER = b"ann.example@example.com"
FIXTURE_MESSAGE_ID = b"CAJ8fQ0x+f3k2Yq3=mD1nUE5Tq2pB7rV9m_Xw4kLhS0e1dZg@mail.gmail.com"


def unique_email(name: str = "ann") -> str:
    return f"{name}.{uuid.uuid4().hex[:10]}@example.com"


def sendgrid_fixture(sender: str, message_id: str | None = None) -> bytes:
    """The captured SendGrid Inbound Parse body, re-addressed to ``sender`` (case kept as given)."""
    body = (FIXTURES / "sendgrid_inbound_reply.multipart").read_bytes()
    body = body.replace(FIXTURE_SENDER, sender.encode()).replace(
        FIXTURE_ENVELOPE_SENDER, sender.lower().encode()
    )
    if message_id is not None:
        body = body.replace(FIXTURE_MESSAGE_ID, message_id.encode())
    return body


async def post_inbound_email(
    stack: Stack, body: bytes, secret: str | None = EMAIL_INBOUND_SECRET, headers: dict | None = None
) -> aiohttp.ClientResponse:
    """POST a multipart body to the inbound email webhook, as SendGrid would."""
    params = {"secret": secret} if secret is not None else {}
    response = await stack.http.post(
        stack.gateway_url + "/webhooks/email/inbound",
        data=body,
        params=params,
        headers={"Content-Type": "multipart/form-data; boundary=xYzZY", **(headers or {})},
    )
    await response.read()
    return response


async def customer_by_email(stack: Stack, email: str) -> str | None:
    status, body = await stack.api("GET", "/v1/customers", params={"email": email})
    assert status == 200, body
    return body["data"][0]["id"] if body["data"] else None


async def mail_to(stack: Stack, address: str) -> list[dict]:
    """What the simulator's SMTP sink received for ``address``."""
    return (await stack.simulator("GET", "/simulator/email/messages", params={"to": address}))["messages"]


async def message_record(stack: Stack, message_id: str) -> dict | None:
    status, body = await stack.api("GET", f"/v1/messages/{message_id}")
    if status == 404:
        return None
    assert status == 200, body
    return body
