"""``/v1/journeys``: list, read and publish journey definitions; their stats; a customer's journeys."""

from __future__ import annotations

from aiohttp import web

from conversations.access import Scope
from conversations.journeys.definition import DefinitionError, load_source, parse_definition
from conversations.journeys.registry import current_versions, publish, stored_version, versions_of
from conversations.journeys.views import JourneyReader
from gateway.definition_upload import definition_source
from gateway.endpoints import ANY_OBJECT, Endpoints, Param
from gateway.errors import ApiError
from gateway.query import query_params
from gateway.routes.customers import CUSTOMER_ID, resolve_customer_id
from gateway.routes.messages import json_response
from gateway.services import SERVICES, Services

routes = Endpoints()
_NAME = Param("name", "path", {"type": "string"}, "The journey's name", True)

MAX_DEFINITION_BYTES = 256 * 1024
MAX_VERSION = 2**53  # versions count publishes; anything larger is not one of ours


def _reader(services: Services) -> JourneyReader:
    return JourneyReader(services.redis, services.keys)


async def _require_journey(services: Services, name: str) -> int:
    version = (await current_versions(services.redis, services.keys)).get(name)
    if version is None:
        raise ApiError(404, "journey_not_found", f"no journey named {name!r}")
    return version


@routes.api(
    "GET",
    "/v1/journeys",
    "listJourneys",
    "Journeys with versions and status",
    "journeys",
    Scope.READ,
    (200, "The journeys", ANY_OBJECT),
)
async def list_journeys(request: web.Request) -> web.Response:
    """Every journey with its current version, all versions, and status."""
    services = request.app[SERVICES]
    return json_response({"data": await _reader(services).summaries()})


@routes.api(
    "GET",
    "/v1/journeys/{name}",
    "getJourney",
    "One journey definition (current version)",
    "journeys",
    Scope.READ,
    (200, "The definition", ANY_OBJECT),
    (404, 422),
    params=(
        _NAME,
        Param(
            "version", "query", {"type": "integer", "minimum": 1}, "A published version (default: current)"
        ),
    ),
)
async def get_journey(request: web.Request) -> web.Response:
    """The current definition (or ``?version=N``) as it was published."""
    services = request.app[SERVICES]
    name = request.match_info["name"]
    current = await _require_journey(services, name)
    version = query_params(request).integer("version", default=current, minimum=1, maximum=MAX_VERSION)
    stored = await stored_version(services.redis, services.keys, name, version)
    if stored is None:
        raise ApiError(404, "version_not_found", f"journey {name} has no version {version}", "version")
    return json_response(
        {
            "name": name,
            "version": version,
            "current_version": current,
            "versions": await versions_of(services.redis, services.keys, name),
            "published_at": stored.published_at,
            "definition": stored.source,
        }
    )


@routes.api(
    "PUT",
    "/v1/journeys/{name}",
    "putJourney",
    "Publish a new version of a journey",
    "journeys",
    Scope.ADMIN,
    (200, "The stored version", ANY_OBJECT),
    (404, 422),
    body=ANY_OBJECT,
    params=(_NAME,),
    also_ok=(201,),
)
async def put_journey(request: web.Request) -> web.Response:
    """Publish a definition (JSON, or YAML with a YAML content type) as the journey's next version.

    Running instances keep the version they started on; an unchanged definition keeps its version.
    """
    services = request.app[SERVICES]
    name = request.match_info["name"]
    source = await definition_source(request, "journey", MAX_DEFINITION_BYTES, load_source, DefinitionError)
    try:
        definition = parse_definition(source, services.config.message_types)
    except DefinitionError as exc:
        raise ApiError(422, "invalid_journey", exc.message, exc.field or None) from exc
    published = await publish(services.redis, services.keys, definition, source, services.clock())
    created = published.changed and published.version == 1
    return json_response(
        {
            "name": name,
            "version": published.version,
            "changed": published.changed,
            "status": definition.status,
        },
        status=201 if created else 200,
    )


@routes.api(
    "GET",
    "/v1/journeys/{name}/stats",
    "journeyStats",
    "Entered, active, completed, converted, exited, per step",
    "journeys",
    Scope.READ,
    (200, "Counters", ANY_OBJECT),
    (404,),
    params=(_NAME,),
)
async def journey_stats(request: web.Request) -> web.Response:
    """Entered, active, completed, converted, exited; per send step sent/delivered/failed/replied."""
    services = request.app[SERVICES]
    name = request.match_info["name"]
    await _require_journey(services, name)
    stats = await _reader(services).stats(name)
    return json_response(stats)


@routes.api(
    "GET",
    "/v1/customers/{customer_id}/journeys",
    "customerJourneys",
    "The customer's journey instances and where each stands",
    "journeys",
    Scope.READ,
    (200, "Instances", ANY_OBJECT),
    (404,),
    params=(CUSTOMER_ID,),
)
async def customer_journeys(request: web.Request) -> web.Response:
    """The customer's journey instances, newest first, and where each stands."""
    services = request.app[SERVICES]
    customer_id = await resolve_customer_id(services, request.match_info["customer_id"])
    instances = await _reader(services).customer_instances(customer_id)
    return json_response({"customer_id": customer_id, "data": instances})
