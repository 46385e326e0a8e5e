"""Helpers that speak to the stack as Meta's WhatsApp Cloud API does."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from channels.whatsapp_cloud import SIGNATURE_HEADER, compute_signature
from conversations.store import Keys
from tests.support.stack import Stack

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "whatsapp"
FIXTURE_CUSTOMER = "16505551234"  # the wa_id the fixtures' customer writes from
FIXTURE_SECOND_CUSTOMER = "447700900123"  # the other customer of batched.json
WEBHOOK = "/webhooks/whatsapp"

_WAMID = re.compile(r'"(wamid\.[^"]+)"')


def fixture_bytes(name: str) -> bytes:
    """A captured payload exactly as stored (its raw bytes are what gets signed)."""
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_json(name: str) -> dict:
    return json.loads(fixture_bytes(name))


def fixture_for(name: str, customers: dict[str, str], wamid_suffix: str | None = None) -> bytes:
    """The fixture with its customers' wa_ids swapped (``{fixture wa_id: phone}``) and fresh wamids.

    Fresh wamids keep tests independent: the gateway dedupes on them for days.
    """
    text = fixture_bytes(name).decode()
    for old, phone in customers.items():
        text = text.replace(f'"{old}"', f'"{phone.lstrip("+")}"')
    suffix = wamid_suffix or uuid.uuid4().hex[:12]
    text = _WAMID.sub(lambda match: f'"{match.group(1)}{suffix}"', text)
    return text.encode()


def sign(stack: Stack, raw: bytes) -> str:
    return compute_signature(stack.config.whatsapp.app_secret, raw)


async def post_whatsapp(
    stack: Stack, raw: bytes, signature: str | None = "auto"
) -> tuple[aiohttp.ClientResponse, dict]:
    """POST a webhook body, signed over its raw bytes as Meta does unless told otherwise."""
    headers = {"Content-Type": "application/json"}
    if signature == "auto":
        signature = sign(stack, raw)
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    async with stack.http.post(stack.gateway_url + WEBHOOK, data=raw, headers=headers) as response:
        body = await response.json(content_type=None)
        return response, body


async def messages_of(stack: Stack, customer_id: str, at_least: int = 1) -> list[dict] | None:
    """The customer's message entries once there are ``at_least`` of them."""
    entries = [e for e in (await stack.thread(customer_id))["entries"] if e["kind"] == "message"]
    return entries if len(entries) >= at_least else None


async def message_record(stack: Stack, message_id: str) -> dict:
    status, body = await stack.api("GET", f"/v1/messages/{message_id}")
    if status == 404:
        return {"status": "not_yet_applied"}
    assert status == 200, body
    return body


async def wa_sent_to(stack: Stack, phone: str) -> list[dict]:
    """What the fake Graph API accepted for this number."""
    return (await stack.simulator("GET", "/simulator/whatsapp/messages", params={"to": phone}))["messages"]


async def customer_hash(stack: Stack, customer_id: str) -> dict[str, str]:
    """The customer's profile hash as stored (``last_inbound_at:whatsapp``, ``profile_name``, …)."""
    redis = Redis.from_url(stack.config.redis_url)
    try:
        raw = await redis.hgetall(Keys(stack.config.key_prefix).customer(customer_id))
    finally:
        await redis.aclose()
    return {k.decode(): v.decode() for k, v in raw.items()}
