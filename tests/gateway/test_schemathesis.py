"""schemathesis against the served /openapi.json: no 5xx, and every answer is the documented one.

API calls carry a valid key and webhooks a valid Twilio signature (most of the time), so the
generated data reaches the parsers and handlers instead of stopping at the auth check. Reads
often name a customer and a journey that exist, so a bad query value meets the code that uses
it; some cases carry an odd numeric string in a query parameter (superscript digits, ``inf``,
out-of-range stream ids) or a deeply nested unknown field in a JSON webhook body.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from channels.twilio_signature import compute_signature
from conversations.config import Config
from gateway.openapi import build_document
from tests.support.odd_values import nesting_depths, odd_query_values, with_nested_field
from tests.support.stack import API_KEY, Stack, unique_phone

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


class Served(NamedTuple):
    """Where the gateway is, its config, a session, and a customer and journey that exist."""

    url: str
    config: Config
    session: requests.Session
    customer_id: str
    journey: str


@pytest.fixture(scope="module")
async def served(stack: Stack) -> AsyncIterator[tuple[Served, Any]]:
    """The running stack's gateway and the schema it serves, loaded the way a client would."""
    status, body = await stack.api(
        "PUT", f"/v1/customers/st_{uuid.uuid4().hex[:8]}", json={"identifiers": {"phone": unique_phone()}}
    )
    assert status == 201, body
    journey = "st_" + uuid.uuid4().hex[:8]
    definition = {"trigger": {"event": "st_ping"}, "steps": [{"id": "hi", "type": "send", "body": "hi"}]}
    status, published = await stack.api("PUT", f"/v1/journeys/{journey}", json=definition)
    assert status == 201, published
    with requests.Session() as session:
        schema = await asyncio.to_thread(schemathesis.openapi.from_url, stack.gateway_url + "/openapi.json")
        yield Served(stack.gateway_url, stack.config, session, body["customer"]["id"], journey), schema


def _sign(prepared: requests.PreparedRequest, config: Config) -> None:
    """Add the X-Twilio-Signature Twilio would send for this exact request."""
    body = prepared.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    parts = urlsplit(prepared.url)
    url = config.public_url + parts.path + (f"?{parts.query}" if parts.query else "")
    form = parse_qsl(body, keep_blank_values=True)
    prepared.headers["X-Twilio-Signature"] = compute_signature(config.twilio.auth_token, url, form)


def _make_reachable(case, chance: random.Random, served: Served) -> None:
    """Put a real phone number (and our callback ids) into half the positive cases, so the
    success paths run too: random strings are never valid phone numbers. Reads name the
    customer and journey that exist, so their query values are used, not cut short by a 404."""
    phone = "+1415555" + str(chance.randrange(1000, 9999))
    if case.method == "GET" and case.path_parameters:
        if "customer_id" in case.path_parameters:
            case.path_parameters["customer_id"] = served.customer_id
        if "name" in case.path_parameters:
            case.path_parameters["name"] = served.journey
    if case.path == "/v1/messages" and isinstance(case.body, dict):
        case.body["to"] = {"phone": phone}
    elif case.path.startswith("/webhooks/") and isinstance(case.body, dict):
        case.body["From"] = phone
        if case.query is not None and "cid" in case.query:
            case.query["cid"] = "cus_1_" + uuid.UUID(int=chance.getrandbits(128)).hex.upper()


def _oddities(case, odd_value: str | None, depth: int | None, chance: random.Random) -> bytes | None:
    """Put ``odd_value`` into one of the case's query parameters; with ``depth``, the JSON
    webhook body to send instead (the case's, with a deeply nested unknown field)."""
    if odd_value is not None and case.operation.query:
        names = sorted(parameter.name for parameter in case.operation.query)
        case.query = {**(case.query or {}), chance.choice(names): odd_value}
    if depth is not None and case.path.startswith("/webhooks/") and isinstance(case.body, dict):
        return with_nested_field(msgspec.json.encode(case.body), depth)
    return None


def _exercise(
    case, served: Served, mode: GenerationMode, odd_value: str | None = None, depth: int | None = None
) -> None:
    url, config, session = served.url, served.config, served.session
    headers = dict(case.headers or {})
    chance = random.Random(repr(case.body) + repr(case.query) + repr(case.path_parameters))
    if mode is GenerationMode.POSITIVE and chance.random() < 0.5:
        _make_reachable(case, chance, served)
    raw_body = _oddities(case, odd_value, depth, chance)
    if case.path.startswith("/v1/") and chance.random() < 0.9:
        headers["Authorization"] = f"Bearer {API_KEY}"
    case.headers = headers
    kwargs = case.as_transport_kwargs(base_url=url)
    prepared = session.prepare_request(
        requests.Request(
            method=kwargs["method"],
            url=kwargs["url"],
            params=kwargs.get("params"),
            headers=kwargs.get("headers"),
            data=kwargs.get("data"),
            json=kwargs.get("json"),
        )
    )
    if raw_body is not None:
        prepared.prepare_body(raw_body, None)
    if case.path.startswith("/webhooks/twilio/") and chance.random() < 0.8:
        _sign(prepared, config)
    response = session.send(prepared, timeout=30)
    case.validate_response(response, checks=CHECKS)


OPERATIONS = [
    pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode.value}")
    for path, methods in build_document()["paths"].items()
    for method, spec in methods.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # Negative data needs something to break; the console socket is a WebSocket upgrade.
    if (mode is GenerationMode.POSITIVE or "parameters" in spec or "requestBody" in spec)
    and path != "/v1/console/ws"
]


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
async def test_operation_conforms_to_the_served_openapi(
    served: tuple[Served, Any], method: str, path: str, mode: GenerationMode
) -> None:
    target, schema = served
    operation = schema[path][method]

    @given(
        case=operation.as_strategy(generation_mode=mode),
        odd_value=st.none() | odd_query_values,
        depth=st.none() | nesting_depths,
    )
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case, odd_value: str | None, depth: int | None) -> None:
        _exercise(case, target, mode, odd_value, depth)

    # Blocking HTTP in a thread: the stack's gateway runs on this test's event loop.
    await asyncio.to_thread(run)
