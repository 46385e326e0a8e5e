"""API key scopes, hashed keys, per-key rate limits and request size/depth limits."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from conversations.access import ApiKeySpec, Scope, parse_api_key
from conversations.config import ConfigError, load_config
from gateway.app import create_app
from tests.conftest import delete_prefix
from tests.support.stack import API_KEY, make_config

SENDER, READER, ADMIN, HASHED, CUSTOMERS = (
    f"{name}-{uuid.uuid4().hex[:8]}" for name in ("s", "r", "a", "h", "c")
)
SLOW = f"slow-{uuid.uuid4().hex[:8]}"
ALIAS = f"alias-{uuid.uuid4().hex[:8]}"  # given as admin_api_keys: a plain alias of "<key>:admin"
BATCHER = f"batcher-{uuid.uuid4().hex[:8]}"
MESSAGE = {"to": {"phone": "+14155550123"}, "body": "hi"}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[TestClient]:
    prefix = f"tltest-access-{uuid.uuid4().hex[:8]}"
    config = msgspec.structs.replace(
        make_config(redis_url, 1, 2, prefix),
        api_keys=[
            API_KEY,
            f"{SENDER}:send",
            f"{READER}:read",
            f"{ADMIN}:admin",
            f"{CUSTOMERS}:read+customers:write",
            ApiKeySpec(sha256=hashlib.sha256(HASHED.encode()).hexdigest(), scopes=[Scope.READ, Scope.SEND]),
            ApiKeySpec(key=SLOW, scopes=[Scope.READ], rate_per_second=0.5, burst=3),
            ApiKeySpec(key=BATCHER, scopes=[Scope.SEND], rate_per_second=0.01, burst=10),
        ],
        admin_api_keys=[ALIAS],
    )
    async with TestClient(TestServer(create_app(config, shard_actors=[]))) as test_client:
        yield test_client
    await delete_prefix(redis_url, prefix)


async def _send(client: TestClient, key: str) -> int:
    async with client.post("/v1/messages", json=MESSAGE, headers=_auth(key)) as response:
        return response.status


async def _read(client: TestClient, key: str) -> tuple[int, dict]:
    async with client.get("/v1/messages/msg_NOPE", headers=_auth(key)) as response:
        return response.status, await response.json()


async def test_scopes_decide_what_a_key_may_do(client: TestClient) -> None:
    assert await _send(client, SENDER) == 202
    status, body = await _read(client, SENDER)
    assert status == 403 and body["error"]["code"] == "insufficient_scope"
    assert (await _read(client, READER))[0] == 404  # allowed, the message just does not exist
    assert await _send(client, READER) == 403
    assert await _send(client, ADMIN) == 202 and (await _read(client, ADMIN))[0] == 404
    assert await _send(client, API_KEY) == 202  # a bare key keeps every scope
    assert await _send(client, HASHED) == 202  # configured by its SHA-256 only
    assert (await _read(client, "nope"))[0] == 401


async def _create_agent(client: TestClient, key: str) -> tuple[int, dict]:
    name = f"agent-{uuid.uuid4().hex[:8]}"
    async with client.post("/v1/agents", json={"name": name}, headers=_auth(key)) as response:
        return response.status, await response.json()


async def test_one_rule_an_admin_scoped_key_manages_agents(client: TestClient) -> None:
    for key in (ADMIN, API_KEY, ALIAS):  # the admin scope, a bare key (every scope), the alias
        status, body = await _create_agent(client, key)
        assert status == 201 and body["token"].startswith("tla_"), (key, body)
    for key in (SENDER, READER, HASHED):
        status, body = await _create_agent(client, key)
        assert status == 403 and body["error"]["code"] == "insufficient_scope", (key, body)
    # The alias is an ordinary API key: it works everywhere an admin key does.
    assert await _send(client, ALIAS) == 202 and (await _read(client, ALIAS))[0] == 404


CUSTOMER_WRITES = [
    ("POST", "/v1/customers/cus_0_NOPE/merge", {"other": "cus_1_NOPE"}),
    ("PUT", "/v1/customers/cus_0_NOPE/preferences", {"preferences": {}}),
]


@pytest.mark.parametrize(("method", "path", "body"), CUSTOMER_WRITES)
async def test_merging_and_preferences_need_customers_write(
    client: TestClient, method: str, path: str, body: dict
) -> None:
    async def status_for(key: str) -> tuple[int, str]:
        async with client.request(method, path, json=body, headers=_auth(key)) as response:
            return response.status, (await response.json())["error"]["code"]

    assert await status_for(SENDER) == (403, "insufficient_scope")
    assert await status_for(READER) == (403, "insufficient_scope")
    # Allowed: the customers just do not exist.
    for key in (CUSTOMERS, ADMIN, API_KEY):
        assert (await status_for(key))[0] == 404
    assert await _send(client, CUSTOMERS) == 403  # customers:write does not send


async def test_rate_limit_is_429_with_retry_after(client: TestClient) -> None:
    statuses = []
    for _ in range(5):
        async with client.get("/v1/messages/msg_NOPE", headers=_auth(SLOW)) as response:
            statuses.append(response.status)
            if response.status == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert (await response.json())["error"]["code"] == "rate_limited"
    assert statuses[:3] == [404, 404, 404]
    assert 429 in statuses[3:]
    # Other keys have their own bucket.
    assert (await _read(client, READER))[0] == 404


async def test_a_batch_costs_one_token_per_event(client: TestClient) -> None:
    def batch(count: int) -> dict:
        event = {"customer": {"phone": "+14155550123"}, "name": "rate_probe"}
        return {"events": [event] * count}

    async def post(count: int) -> tuple[int, dict]:
        async with client.post("/v1/events:batch", json=batch(count), headers=_auth(BATCHER)) as response:
            return response.status, await response.json()

    status, body = await post(11)  # more than the bucket can ever hold: retrying cannot help
    assert status == 422 and body["error"]["field"] == "events", body
    status, body = await post(8)
    assert status == 200 and body["accepted"] + body["duplicates"] == 8, body
    status, body = await post(5)  # 1 + 1 + 8 of the 10 tokens are gone
    assert status == 429 and body["error"]["code"] == "rate_limited", body


async def test_oversized_body_is_json_413(client: TestClient) -> None:
    big = b'{"to": {"phone": "+14155550123"}, "body": "' + b"x" * (1024 * 1024) + b'"}'
    headers = {**_auth(SENDER), "Content-Type": "application/json"}
    async with client.post("/v1/messages", data=big, headers=headers) as response:
        assert response.status == 413
        assert response.content_type == "application/json"
        assert (await response.json())["error"]["code"] == "payload_too_large"
    form = {"MessageSid": "SM1", "From": "+14155550123", "Body": "x" * (1024 * 1024)}
    async with client.post("/webhooks/twilio/sms", data=form) as response:
        assert response.status == 413 and response.content_type == "application/json"


async def test_deep_json_is_refused(client: TestClient) -> None:
    deep = b'{"to": {"phone": "+14155550123"}, "body": "hi", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    headers = {**_auth(SENDER), "Content-Type": "application/json", "Idempotency-Key": "deep"}
    async with client.post("/v1/messages", data=deep, headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "json_too_deep"


def test_config_accepts_scoped_keys_and_tables(tmp_path) -> None:
    path = tmp_path / "threadline.toml"
    digest = hashlib.sha256(b"dashboard-key").hexdigest()
    path.write_text(
        'api_keys = ["plain", "crm:send",\n'
        f'  {{ name = "dashboard", sha256 = "{digest}", scopes = ["read"], burst = 10 }}]\n'
    )
    config = load_config(path, env={})
    grants = [parse_api_key(entry) for entry in config.api_keys]
    assert [sorted(g.scopes) for g in grants] == [sorted(Scope), [Scope.SEND], [Scope.READ]]
    both = parse_api_key("k:with:colons:send+customers:write")
    assert both.scopes == {Scope.SEND, Scope.CUSTOMERS_WRITE}
    assert both.digest == hashlib.sha256(b"k:with:colons").digest()
    assert grants[2].digest.hex() == digest and grants[2].burst == 10
    from_env = load_config(None, env={"THREADLINE_API_KEYS": "k1, k2:read+send"})
    assert [sorted(parse_api_key(e).scopes) for e in from_env.api_keys] == [
        sorted(Scope),
        [Scope.READ, Scope.SEND],
    ]


@pytest.mark.parametrize(
    "entries",
    [
        ["k:sned"],
        ["k:customers:wirte"],
        ["k:read+"],
        [{"scopes": ["read"]}],
        [{"key": "k", "sha256": "0" * 64}],
        [{"sha256": "xyz"}],
    ],
)
def test_bad_key_config_is_a_config_error(tmp_path, entries: list) -> None:
    with pytest.raises(ConfigError, match="api_keys"):
        _load_with(tmp_path, entries)


def _load_with(tmp_path, entries: list):
    path = tmp_path / "threadline.toml"
    items = [
        json.dumps(entry)
        if isinstance(entry, str)
        else "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in entry.items()) + " }"
        for entry in entries
    ]
    path.write_text(f"api_keys = [{', '.join(items)}]\n")
    return load_config(path, env={})
