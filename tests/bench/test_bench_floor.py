"""The benchmark's bare floor does its little job right: signed in, forged out, one entry each."""

from __future__ import annotations

import uuid

from multidict import MultiDict
from redis.asyncio import Redis
from twilio.request_validator import RequestValidator

from bench.floor import FLOOR_SHARD, create_floor_app, signature_ok
from conversations.store import Keys
from tests.conftest import delete_prefix
from tests.support.stack import twilio_inbound_form, unique_phone

TOKEN = "floor-token"
URL = "http://127.0.0.1:8099/webhooks/twilio/sms"


def test_signature_agrees_with_the_sdk_and_rejects_forgeries() -> None:
    form = twilio_inbound_form(unique_phone(), "hello")
    signature = RequestValidator(TOKEN).compute_signature(URL, MultiDict(form))
    assert signature_ok(TOKEN, URL, list(form.items()), signature)
    assert not signature_ok("other-token", URL, list(form.items()), signature)
    assert not signature_ok(TOKEN, URL, [*form.items(), ("Body", "tampered")], signature)
    assert not signature_ok(TOKEN, URL, list(form.items()), None)


async def test_floor_stores_signed_messages_and_refuses_forged(
    aiohttp_client, redis_url: str, key_prefix: str
) -> None:
    prefix = f"{key_prefix}-floor-{uuid.uuid4().hex[:6]}"
    keys = Keys(prefix)
    client = await aiohttp_client(create_floor_app(redis_url, keys, TOKEN, "http://public.example"))
    path = "/webhooks/twilio/sms"
    form = twilio_inbound_form(unique_phone(), "hello floor")
    signature = RequestValidator(TOKEN).compute_signature("http://public.example" + path, MultiDict(form))
    redis = Redis.from_url(redis_url)
    try:
        signed = await client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        forged = await client.post(path, data=form, headers={"X-Twilio-Signature": "AAAA" + signature[4:]})
        unsigned = await client.post(path, data=form)
        assert signed.status == 200 and "<Response/>" in await signed.text()
        assert (forged.status, unsigned.status) == (403, 403)
        ((_, fields),) = await redis.xrange(keys.ingest(FLOOR_SHARD))
        assert f"MessageSid={form['MessageSid']}".encode() in fields[b"d"]
        assert await redis.exists(keys.dedupe(FLOOR_SHARD, f"twilio:msg:{form['MessageSid']}")) == 1
    finally:
        await redis.aclose()
        await delete_prefix(redis_url, prefix)
