"""/v1/segments through the running stack: definitions, validation, live membership, paging."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.stack import Stack, eventually, unique_phone


def _name(base: str) -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


async def _put(stack: Stack, name: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    return await stack.api("PUT", f"/v1/segments/{name}", json=body, **kwargs)


async def test_a_segment_is_versioned_and_read_back(stack: Stack) -> None:
    name, tag = _name("paying"), uuid.uuid4().hex
    # A customer who exists before the segment does: the backfill finds them.
    status, body = await stack.api(
        "PUT",
        f"/v1/customers/seg-{tag[:10]}",
        json={"identifiers": {"phone": unique_phone()}, "attributes": {"custom": {"plan": tag}}},
    )
    assert status == 201, body
    existing = body["customer"]["id"]
    rule = {"attribute": "custom.plan", "op": "in", "value": [tag, "other"]}
    status, body = await _put(stack, name, {"rule": rule})
    assert status == 201 and body == {"name": name, "version": 1, "changed": True}
    status, body = await _put(stack, name, {"name": name, "rule": rule})
    assert status == 200 and body["version"] == 1 and body["changed"] is False
    yaml_body = f"name: {name}\nrule:\n  all:\n    - attribute: custom.plan\n      value: '{tag}'\n"
    status, body = await stack.api(
        "PUT",
        f"/v1/segments/{name}",
        headers={"Content-Type": "application/yaml"},
        data=yaml_body,
    )
    assert status == 200 and body["version"] == 2, body

    async def ready() -> dict | None:
        status, view = await stack.api("GET", f"/v1/segments/{name}")
        assert status == 200
        return view if view["state"] == "ready" else None

    view = await eventually(ready, what="every shard backfilled version 2")
    assert view["version"] == 2 and view["count"] == 1
    assert view["rule"] == {"all": [{"attribute": "custom.plan", "value": tag}]}
    status, page = await stack.api("GET", f"/v1/segments/{name}/members")
    assert page == {"data": [existing], "next_cursor": None}
    assert set(view) >= {"name", "version", "count", "updated_at", "rule", "state"}
    status, listed = await stack.api("GET", "/v1/segments")
    assert status == 200 and name in [s["name"] for s in listed["data"]]
    status, body = await stack.api("DELETE", f"/v1/segments/{name}")
    assert status == 200
    status, body = await stack.api("GET", f"/v1/segments/{name}")
    assert status == 404 and body["error"]["code"] == "segment_not_found"


@pytest.mark.parametrize(
    "rule, code, field",
    [
        ({"attribute": "lifecycle_stage", "op": "like", "value": 1}, "invalid_segment", "rule.op"),
        ({"event": "x", "within": "a fortnight"}, "invalid_segment", "rule.within"),
        ({"frob": 1}, "invalid_segment", "rule.frob"),
        ({"segment": "no-such-segment"}, "unknown_segment", "rule"),
    ],
)
async def test_a_bad_rule_is_a_422_naming_the_field(stack: Stack, rule: Any, code: str, field: str) -> None:
    status, body = await _put(stack, _name("bad"), {"rule": rule})
    assert status == 422, body
    assert body["error"]["code"] == code and body["error"]["field"] == field


async def test_too_deep_or_too_wide_or_circular_is_a_422(stack: Stack) -> None:
    deep: dict[str, Any] = {"event": "x"}
    for _ in range(8):
        deep = {"not": deep}
    status, body = await _put(stack, _name("deep"), {"rule": deep})
    assert status == 422 and "8 deep" in body["error"]["message"]
    wide = {"any": [{"event": f"e{i}"} for i in range(65)]}
    status, body = await _put(stack, _name("wide"), {"rule": wide})
    assert status == 422 and "64 leaves" in body["error"]["message"]
    a, b = _name("a"), _name("b")
    assert (await _put(stack, a, {"rule": {"event": _name("never")}}))[0] == 201
    assert (await _put(stack, b, {"rule": {"segment": a}}))[0] == 201
    status, body = await _put(stack, a, {"rule": {"segment": b}})
    assert status == 422 and body["error"]["code"] == "segment_cycle", body
    for name in (b, a):  # segments live for the whole session: leave none behind
        assert (await stack.api("DELETE", f"/v1/segments/{name}"))[0] == 200


async def test_an_event_makes_the_customer_a_member_within_a_second(stack: Stack) -> None:
    name, event = _name("buyers"), _name("purchase")
    rule = {"event": event, "count": {"op": "gte", "value": 1}, "within": "30d"}
    assert (await _put(stack, name, {"rule": rule}))[0] == 201
    phones = [unique_phone() for _ in range(3)]
    for phone in phones:
        status, _ = await stack.api("POST", "/v1/events", json={"customer": {"phone": phone}, "name": event})
        assert status == 202

    async def members() -> list[str] | None:
        status, body = await stack.api("GET", f"/v1/segments/{name}/members", params={"limit": "1000"})
        assert status == 200
        return body["data"] if len(body["data"]) == 3 else None

    found = await eventually(members, timeout=1.0, what="three members")
    expected = sorted([await stack.customer_id(p) for p in phones])  # type: ignore[type-var]
    assert sorted(found) == expected
    status, view = await stack.api("GET", f"/v1/segments/{name}")
    assert view["count"] == 3
    # Paging: two pages of two and one, in a stable order, no duplicates.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page = await stack.api("GET", f"/v1/segments/{name}/members", params=params)
        assert status == 200 and len(page["data"]) <= 2
        seen += page["data"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == expected and len(seen) == 3
    status, body = await stack.api("GET", f"/v1/customers/{expected[0]}/segments")
    assert status == 200 and [s["name"] for s in body["segments"]] == [name]
    assert (await stack.api("DELETE", f"/v1/segments/{name}"))[0] == 200
    status, body = await stack.api("GET", f"/v1/customers/{expected[0]}/segments")
    assert status == 200 and body["segments"] == []
