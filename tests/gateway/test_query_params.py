"""Odd query values (superscript digits, inf, nan, negatives, ids Redis refuses) are a 422 naming
the parameter on every route that reads them, never a 500; and deeply nested webhook JSON is a 400."""

from __future__ import annotations

import uuid

import pytest

from conversations.console import parse_event_id
from conversations.ids import home_slot_of
from conversations.numerals import stream_id
from conversations.thread import is_valid_cursor
from gateway.query import QueryParams
from tests.support.fixtures import fixture
from tests.support.stack import Stack, unique_phone

ODD_NUMBERS = ["²", "١٢", "+5", " 5", "5 ", "1_0", "0x10", "1e3", "", "-1", "99999999999999999999999"]
ODD_TIMES = ["inf", "-inf", "nan", "-5", "1e300", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"]
ODD_CURSORS = ["²-1", "1-²", "18446744073709551616-0", "18446744073709551615-18446744073709551615", "-5-0"]


@pytest.mark.parametrize("raw", ODD_NUMBERS)
def test_integers_are_ascii_digits_within_range(raw: str) -> None:
    with pytest.raises(Exception) as caught:
        QueryParams({"limit": raw}).integer("limit", default=50, minimum=1, maximum=500)
    assert getattr(caught.value, "field", None) == "limit"


def test_readers_accept_what_they_document() -> None:
    query = QueryParams({"limit": "500", "since": "2024-05-01T10:00:00", "cursor": "1-0", "until": "0"})
    assert query.integer("limit", default=50, minimum=1, maximum=500) == 500
    assert query.integer("absent", default=7, minimum=1, maximum=9) == 7
    assert query.instant("since") == 1_714_557_600.0
    assert query.instant("until") == 0.0
    assert query.stream_id("cursor", "a cursor") == "1-0"


async def _customer(stack: Stack) -> str:
    status, body = await stack.api(
        "PUT", f"/v1/customers/ext_{uuid.uuid4().hex[:8]}", json={"identifiers": {"phone": unique_phone()}}
    )
    assert status == 201, body
    return body["customer"]["id"]


async def test_odd_thread_queries_are_422_naming_the_parameter(stack: Stack) -> None:
    customer_id = await _customer(stack)
    cases = [
        *(("limit", raw) for raw in ODD_NUMBERS),
        *((name, raw) for raw in ODD_TIMES for name in ("since", "until")),
        *(("cursor", raw) for raw in ODD_CURSORS),
        ("channel", "sms,²"),
        ("direction", "²"),
    ]
    for name, raw in cases:
        if raw == "":
            continue  # an empty value means "not given" for filters; limit= is checked below
        status, body = await stack.api("GET", f"/v1/customers/{customer_id}/thread", params={name: raw})
        assert status == 422, (name, raw, status, body)
        assert body["error"] == {"code": "invalid_query", "message": body["error"]["message"], "field": name}
    status, body = await stack.api("GET", f"/v1/customers/{customer_id}/thread", params={"limit": ""})
    assert status == 422 and body["error"]["field"] == "limit"


async def test_odd_journey_versions_are_422(stack: Stack) -> None:
    name = "q_" + uuid.uuid4().hex[:8]
    definition = {"trigger": {"event": "ping"}, "steps": [{"id": "hi", "type": "send", "body": "hi"}]}
    status, body = await stack.api("PUT", f"/v1/journeys/{name}", json=definition)
    assert status == 201, body
    for raw in ["²", "0", "-1", "99999999999999999999999", "1.0"]:
        status, body = await stack.api("GET", f"/v1/journeys/{name}", params={"version": raw})
        assert status == 422 and body["error"]["field"] == "version", (raw, status, body)
    status, body = await stack.api("GET", f"/v1/journeys/{name}", params={"version": "1"})
    assert status == 200 and body["version"] == 1


async def test_unsigned_deeply_nested_rcs_webhook_is_a_400(stack: Stack) -> None:
    depth = 50_000
    body = b'{"unknown": ' + b"[" * depth + b"]" * depth + b', "clientToken": "x", "secret": "y"}'
    async with stack.http.post(
        stack.gateway_url + "/webhooks/rcs", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400, await response.text()
        assert (await response.json())["error"]["code"] == "json_too_deep"


@pytest.mark.parametrize("seq", ["%C2%B2", "0", "99999999999999999999999"])
async def test_signed_gather_with_an_odd_seq_is_a_400(stack: Stack, seq: str) -> None:
    phone = unique_phone()
    form = {**fixture("voice", "gather_speech"), "From": phone, "Caller": phone}
    response = await stack.post_twilio(f"/webhooks/twilio/voice/gather?seq={seq}", form)
    assert response.status == 400, await response.text()


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("1-0", (1, 0)),
        ("²-1", None),
        ("1-٣", None),
        ("1", None),
        ("-1-0", None),
        ("1-0-0", None),
        (f"{2**64 - 1}-{2**64 - 1}", None),
        (f"{2**64}-0", None),
        (f"{2**64 - 1}-0", (2**64 - 1, 0)),
    ],
)
def test_stream_ids_are_what_redis_accepts(text: str, pair: tuple[int, int] | None) -> None:
    assert stream_id(text) == pair
    assert is_valid_cursor(text) is (pair is not None)
    assert parse_event_id(text) == pair


def test_customer_ids_name_their_slot_in_ascii_digits() -> None:
    assert home_slot_of("cus_3_X") == 3
    assert home_slot_of("cus_²_X") is None
