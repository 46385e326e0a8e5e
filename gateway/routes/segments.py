"""``/v1/segments``: define, list, read and delete segments; page through their members."""

from __future__ import annotations

import enum
from typing import Any

from aiohttp import web

from conversations.access import Scope
from conversations.segments import registry
from conversations.segments.definition import load_source, parse_segment
from conversations.segments.engine import decode_facts
from conversations.segments.rules import RuleError
from gateway.definition_upload import definition_source
from gateway.endpoints import ANY_OBJECT, Endpoints, Param
from gateway.errors import ApiError
from gateway.routes.customers import CUSTOMER_ID, resolve_customer_id
from gateway.routes.messages import json_response
from gateway.services import SERVICES, Services

routes = Endpoints()
_NAME = Param("name", "path", {"type": "string"}, "The segment's name", True)
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "Members per page")
_CURSOR = Param("cursor", "query", {"type": "string"}, "The next_cursor of the previous page")

MAX_DEFINITION_BYTES = 64 * 1024


class SegmentReadiness(enum.StrEnum):
    """Whether a segment's count is exact (every shard backfilled its current version)."""

    READY = "ready"
    BACKFILLING = "backfilling"


async def _require(services: Services, name: str) -> int:
    version = (await registry.current_versions(services.redis, services.keys)).get(name)
    if version is None:
        raise ApiError(404, "segment_not_found", f"no segment named {name!r}")
    return version


async def _view(services: Services, name: str, version: int) -> dict[str, Any]:
    redis, keys, shards = services.redis, services.keys, services.config.shards
    stored = await registry.stored_version(redis, keys, name, version)
    done = await registry.backfilled(redis, keys, name, version, shards)
    return {
        "name": name,
        "version": version,
        "count": await registry.count(redis, keys, name, shards),
        "updated_at": stored.published_at if stored else None,
        "rule": stored.source.get("rule") if stored else None,
        "description": stored.source.get("description", "") if stored else "",
        "state": SegmentReadiness.READY if done else SegmentReadiness.BACKFILLING,
    }


@routes.api(
    "GET",
    "/v1/segments",
    "listSegments",
    "Segments with their versions, counts and state",
    "segments",
    Scope.READ,
    (200, "The segments", ANY_OBJECT),
)
async def list_segments(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    versions = await registry.current_versions(services.redis, services.keys)
    return json_response({"data": [await _view(services, name, versions[name]) for name in sorted(versions)]})


@routes.api(
    "GET",
    "/v1/segments/{name}",
    "getSegment",
    "One segment: version, member count, rule and state",
    "segments",
    Scope.READ,
    (200, "The segment", ANY_OBJECT),
    (404,),
    params=(_NAME,),
)
async def get_segment(request: web.Request) -> web.Response:
    """``count`` sums the per-shard counters; ``state`` is ``backfilling`` until every shard is done."""
    services = request.app[SERVICES]
    name = request.match_info["name"]
    return json_response(await _view(services, name, await _require(services, name)))


@routes.api(
    "PUT",
    "/v1/segments/{name}",
    "putSegment",
    "Define a segment or publish a new version of it",
    "segments",
    Scope.ADMIN,
    (200, "The stored version", ANY_OBJECT),
    (422,),
    body=ANY_OBJECT,
    params=(_NAME,),
    also_ok=(201,),
)
async def put_segment(request: web.Request) -> web.Response:
    """Publish a definition (JSON, or YAML with a YAML content type); a changed rule is backfilled."""
    services = request.app[SERVICES]
    name = request.match_info["name"]
    source = await definition_source(request, "segment", MAX_DEFINITION_BYTES, load_source, RuleError)
    try:
        segment = parse_segment(source)
        await registry.check_publishable(services.redis, services.keys, segment)
    except RuleError as exc:
        raise ApiError(422, exc.code, exc.message, exc.field or None) from exc
    published = await registry.publish(services.redis, services.keys, segment, source, services.clock())
    if published.changed:
        await registry.queue_backfill(
            services.redis, services.keys, name, published.version, services.config.shards
        )
    return json_response(
        {"name": name, "version": published.version, "changed": published.changed},
        status=201 if published.changed and published.version == published.epoch else 200,
    )


@routes.api(
    "DELETE",
    "/v1/segments/{name}",
    "deleteSegment",
    "Delete a segment and its memberships",
    "segments",
    Scope.ADMIN,
    (200, "Deleted", ANY_OBJECT),
    (404,),
    params=(_NAME,),
)
async def delete_segment(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    name = request.match_info["name"]
    if not await registry.delete(services.redis, services.keys, name, services.config.shards):
        raise ApiError(404, "segment_not_found", f"no segment named {name!r}")
    return json_response({"name": name, "deleted": True})


@routes.api(
    "GET",
    "/v1/segments/{name}/members",
    "segmentMembers",
    "The segment's members (customer ids), page by page",
    "segments",
    Scope.READ,
    (200, "A page of customer ids", ANY_OBJECT),
    (404, 422),
    params=(_NAME, _LIMIT, _CURSOR),
)
async def segment_members(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    name = request.match_info["name"]
    await _require(services, name)
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise ApiError(422, "invalid_query", "limit is a whole number from 1 to 1000", "limit")
    cursor = _parse_cursor(request.query.get("cursor"))
    found, after = await registry.members(
        services.redis, services.keys, name, services.config.shards, int(raw_limit), cursor
    )
    next_cursor = f"{after[0]}:{after[1]}" if after else None
    return json_response({"data": found, "next_cursor": next_cursor})


def _parse_cursor(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    shard, _, after = raw.partition(":")
    if not shard.isdigit() or not after:
        raise ApiError(422, "invalid_query", "cursor is a next_cursor from a previous page", "cursor")
    return int(shard), after


@routes.api(
    "GET",
    "/v1/customers/{customer_id}/segments",
    "customerSegments",
    "The segments the customer is in, with when they entered each",
    "segments",
    Scope.READ,
    (200, "Memberships", ANY_OBJECT),
    (404,),
    params=(CUSTOMER_ID,),
)
async def customer_segments(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    customer_id = await resolve_customer_id(services, request.match_info["customer_id"])
    facts = decode_facts(await services.redis.get(services.keys.segment_facts(customer_id)))
    versions = await registry.current_versions(services.redis, services.keys)
    data = []
    for name, held in sorted(facts.members.items()):
        epoch = await services.redis.hget(services.keys.segment_versions(name), "epoch")
        if name in versions and epoch is not None and int(epoch) == held.epoch:
            data.append({"name": name, "entered_at": held.entered_at})
    return json_response({"customer_id": customer_id, "segments": data})
