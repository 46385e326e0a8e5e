"""GET /openapi.json: served without a key, OpenAPI 3.1, and describing every route the app serves."""

from __future__ import annotations

import re

from tests.support.stack import Stack

DESCRIBED = re.compile(r"^/(v1|webhooks)/")
TEMPLATE = re.compile(r"\{[^}]*\}")


def _shape(path: str) -> str:
    """A path with its parameter names blanked: OpenAPI allows one name per templated segment."""
    return TEMPLATE.sub("{}", path)


def _served_routes(stack: Stack) -> set[tuple[str, str]]:
    gateway_app = stack.runners[-1].app
    found = set()
    for resource in gateway_app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or ""
        for route in resource:
            if route.method not in ("HEAD", "OPTIONS"):
                found.add((route.method, _shape(path)))
    return found


async def test_openapi_is_served_without_a_key_and_describes_every_route(stack: Stack) -> None:
    async with stack.http.get(stack.gateway_url + "/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        document = await response.json()
    assert document["openapi"] == "3.1.0"
    described = {(method.upper(), _shape(path)) for path, ops in document["paths"].items() for method in ops}
    served = _served_routes(stack)
    wanted = {(method, path) for method, path in served if DESCRIBED.match(path)}
    assert wanted, "the gateway serves /v1 routes"
    assert wanted <= described, f"routes missing from /openapi.json: {sorted(wanted - described)}"
    assert described <= served, f"documented but not served: {sorted(described - served)}"


async def test_every_reference_resolves_and_api_routes_need_a_key(stack: Stack) -> None:
    async with stack.http.get(stack.gateway_url + "/openapi.json") as response:
        document = await response.json()
    text = str(document)
    components = document["components"]["schemas"]
    for name in re.findall(r"#/components/schemas/([A-Za-z0-9_.]+)", text):
        assert name in components, name
    send = document["paths"]["/v1/messages"]["post"]
    assert send["security"] == [{"apiKey": []}]
    assert components["SendMessage"]["required"] == ["to"]
    assert any(p["name"] == "Idempotency-Key" for p in send["parameters"])
    assert document["paths"]["/webhooks/twilio/sms"]["post"]["security"] == [{"twilioSignature": []}]


async def test_scope_descriptions_name_admin_once(stack: Stack) -> None:
    async with stack.http.get(stack.gateway_url + "/openapi.json") as response:
        document = await response.json()
    paths = document["paths"]
    assert paths["/v1/agents"]["post"]["description"] == "Needs an API key with the `admin` scope."
    assert paths["/v1/messages"]["post"]["description"] == (
        "Needs an API key with the `send` or the `admin` scope."
    )
    assert "(or `admin`)" not in str(document)
