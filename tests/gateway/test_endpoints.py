"""Routes declared once: the declaration mounts the route, enforces its scope and is the document's operation."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from conversations.access import Scope
from gateway.auth import ApiKeys
from gateway.endpoints import GRANT, Endpoints
from gateway.errors import error_middleware
from gateway.openapi import build_document
from gateway.surface import declared_endpoints

KEYS = ApiKeys(["reader:read", "sender:send"])


def _table() -> Endpoints:
    table = Endpoints()

    @table.api(
        "POST",
        "/v1/things",
        "makeThing",
        "Make a thing",
        "things",
        Scope.SEND,
        (201, "Made", None),
        keys=lambda _: KEYS,
    )
    async def make_thing(request: web.Request) -> web.Response:
        return web.json_response({"key": request[GRANT].key_id}, status=201)

    return table


async def test_a_declared_scope_is_enforced_before_the_handler(aiohttp_client) -> None:
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(_table().route_defs())
    client: TestClient = await aiohttp_client(app)
    anonymous = await client.post("/v1/things")
    reader = await client.post("/v1/things", headers={"Authorization": "Bearer reader"})
    sender = await client.post("/v1/things", headers={"Authorization": "Bearer sender"})
    assert anonymous.status == 401
    assert (reader.status, (await reader.json())["error"]["code"]) == (403, "insufficient_scope")
    assert sender.status == 201 and (await sender.json())["key"]


def test_the_document_operation_is_the_declaration() -> None:
    document = build_document(_table().endpoints)
    operation = document["paths"]["/v1/things"]["post"]
    assert operation["operationId"] == "makeThing"
    assert operation["security"] == [{"apiKey": []}]
    assert "`send` or the `admin` scope" in operation["description"]
    assert {"201", "401", "403"} <= set(operation["responses"])


def test_api_paths_cannot_be_left_out_of_the_document() -> None:
    with pytest.raises(ValueError, match="/v1/hidden"):
        Endpoints().page("GET", "/v1/hidden")


def test_every_operation_id_and_route_is_declared_once() -> None:
    endpoints = declared_endpoints()
    ids = [endpoint.operation_id for endpoint in endpoints]
    routes = [(endpoint.method, endpoint.path) for endpoint in endpoints]
    assert len(ids) == len(set(ids)) and len(routes) == len(set(routes))
