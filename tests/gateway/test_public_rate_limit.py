"""Routes anyone may call are rate-limited per client address; signed webhooks and API keys are not."""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path

from conversations.config import Config
from gateway.app import create_app
from gateway.rate_limit import client_address
from tests.conftest import delete_prefix

PROXY = [ipaddress.ip_network("10.0.0.0/8")]


def test_the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() -> None:
    assert client_address("198.51.100.4", "203.0.113.7", []) == "198.51.100.4"
    assert client_address("198.51.100.4", "203.0.113.7", PROXY) == "198.51.100.4"  # a spoofed header
    assert client_address("10.0.0.2", "203.0.113.7", PROXY) == "203.0.113.7"
    # The client may prepend anything: the nearest hop our proxies did not add is the client.
    assert client_address("10.0.0.2", "1.2.3.4, 203.0.113.7, 10.0.0.9", PROXY) == "203.0.113.7"
    assert client_address("10.0.0.2", "", PROXY) == "10.0.0.2"
    assert client_address("2001:db8:1:2:aaaa::1", "", []) == "2001:db8:1:2::/64"


async def test_public_routes_answer_429_per_address(
    aiohttp_client, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    prefix = f"{key_prefix}-addr-{uuid.uuid4().hex[:6]}"
    config = Config(
        redis_url=redis_url,
        key_prefix=prefix,
        api_keys=["addr-test-key"],
        public_rate_limit_per_second=0.5,
        public_rate_limit_burst=3,
        trusted_proxies=["127.0.0.0/8"],
        journeys_dir=str(tmp_path),
    )
    client = await aiohttp_client(create_app(config))

    async def status(method: str, path: str, client_ip: str, **kwargs) -> int:
        headers = {"X-Forwarded-For": client_ip, **kwargs.pop("headers", {})}
        async with client.request(method, path, headers=headers, **kwargs) as response:
            return response.status

    try:
        assert [await status("GET", "/healthz", "203.0.113.7") for _ in range(3)] == [200] * 3
        assert await status("GET", "/t/some-token", "203.0.113.7") == 429
        assert await status("POST", "/preferences/some-token", "203.0.113.7") == 429
        assert await status("GET", "/healthz", "203.0.113.8") == 200  # another client has its own
        # Provider webhooks (signed) and API requests (per key) are not limited per address.
        webhooks = [await status("POST", "/webhooks/twilio/sms", "203.0.113.7") for _ in range(5)]
        assert 429 not in webhooks
        auth = {"Authorization": "Bearer addr-test-key"}
        api = [await status("GET", "/v1/journeys", "203.0.113.7", headers=auth) for _ in range(5)]
        assert 429 not in api
    finally:
        await delete_prefix(redis_url, prefix)
