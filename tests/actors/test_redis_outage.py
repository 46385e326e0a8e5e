"""Redis down: the gateway answers 503 + Retry-After (never 2xx, never 500); after a restart
over the same AOF, what was accepted is still there and retried webhooks are accepted."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import msgspec
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from channels.twilio_signature import compute_signature
from conversations.codec import decode_ingest
from conversations.models import InboundMessage
from conversations.normalize import phone_identifier
from conversations.sharding import shard_for_identifier
from conversations.store import INGEST_FIELD, Keys
from gateway.app import create_app
from tests.support.redis_server import own_redis_server, spawn_redis_server
from tests.support.stack import API_KEY, make_config, twilio_inbound_form, unique_phone

PUBLIC_URL = "https://threadline.test"
WEBHOOK = "/webhooks/twilio/sms"


async def _post_webhook(client: TestClient, config, form: dict[str, str]):
    signature = compute_signature(config.twilio.auth_token, PUBLIC_URL + WEBHOOK, form.items())
    return await client.post(WEBHOOK, data=form, headers={"X-Twilio-Signature": signature})


async def _stream_sids(redis_url: str, keys: Keys, shard: int) -> list[str]:
    redis = Redis.from_url(redis_url)
    try:
        entries = await redis.xrange(keys.ingest(shard))
    finally:
        await redis.aclose()
    sids = []
    for _, fields in entries:
        entry = decode_ingest(fields[INGEST_FIELD])
        assert isinstance(entry, InboundMessage)
        sids.append(entry.provider_message_id)
    return sids


async def test_redis_outage_is_503_and_the_aof_keeps_what_was_accepted() -> None:
    with own_redis_server(appendonly=True) as (redis_url, process, data_dir):
        port = urlsplit(redis_url).port
        assert port is not None
        config = msgspec.structs.replace(
            make_config(redis_url, 1, 2, f"outage-{uuid.uuid4().hex[:6]}"), public_url=PUBLIC_URL
        )
        keys = Keys(config.key_prefix)
        phone = unique_phone()
        shard = shard_for_identifier(phone_identifier(phone), config.slot_map())
        before = twilio_inbound_form(phone, "before the outage")
        during = twilio_inbound_form(phone, "during the outage")
        restarted = None
        async with TestClient(TestServer(create_app(config, shard_actors=[]))) as client:
            try:
                response = await _post_webhook(client, config, before)
                assert response.status == 200, await response.text()

                process.kill()  # a crash, not a clean shutdown: only the AOF can keep the entry
                process.wait(10)
                started = time.monotonic()
                response = await _post_webhook(client, config, during)
                assert response.status == 503, await response.text()
                assert int(response.headers["Retry-After"]) > 0
                assert (await response.json())["error"]["code"] == "storage_unavailable"
                assert time.monotonic() - started < 30  # answered, not hung on reconnects
                api = await client.post(
                    "/v1/messages",
                    json={"to": {"phone": phone}, "body": "hi"},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                assert api.status == 503 and "Retry-After" in api.headers
                read = await client.get(
                    "/v1/customers", params={"phone": phone}, headers={"Authorization": f"Bearer {API_KEY}"}
                )
                assert read.status == 503

                restarted = spawn_redis_server(port, data_dir, appendonly=True)
                # The AOF replayed the entry accepted before the outage.
                assert await _stream_sids(redis_url, keys, shard) == [before["MessageSid"]]
                # The provider retries the refused webhook; now it is accepted and durable.
                response = await _post_webhook(client, config, during)
                assert response.status == 200, await response.text()
                assert await _stream_sids(redis_url, keys, shard) == [
                    before["MessageSid"],
                    during["MessageSid"],
                ]
                # A further retry is a duplicate: answered 200, not written again.
                assert (await _post_webhook(client, config, during)).status == 200
                assert len(await _stream_sids(redis_url, keys, shard)) == 2
            finally:
                if restarted is not None:
                    restarted.terminate()
                    restarted.wait(10)
