"""``/v1/customers``: find, upsert and read customers, their preferences, consent log and thread."""

from __future__ import annotations

import msgspec
from aiohttp import web

from conversations.access import Scope
from conversations.codec import decode_consent_change, decode_preferences
from conversations.commands import (
    MergeRequest,
    PreferencesRequest,
    UpsertRequest,
    decode_merge_reply,
    decode_preferences_reply,
    decode_upsert_reply,
    encode_command,
)
from conversations.merge import MergeResult, decode_merge_result
from conversations.models import Channel, Direction, Identifier, IdentifierKind
from conversations.normalize import InvalidIdentifier, identifier
from conversations.preferences import Preferences, TypePreference
from conversations.profiles import Attributes, InvalidAttribute, Profile, read_profile, validate_attributes
from conversations.redirects import follow_one
from conversations.sharding import shard_for_customer, shard_for_identifier
from conversations.thread import MAX_PAGE, ThreadFilter, ThreadPage
from gateway.endpoints import ANY_OBJECT, Endpoints, Param
from gateway.errors import ApiError, decode_json_body, validation_error
from gateway.query import QueryParams, query_params
from gateway.routes.messages import json_response
from gateway.services import SERVICES, Services
from gateway.shard_calls import call_shard

routes = Endpoints()
_STRING = {"type": "string"}
CUSTOMER_ID = Param("customer_id", "path", _STRING, "A customer id (cus_…)", True)

DEFAULT_PAGE = 50
LOOKUP_KINDS = [kind.value for kind in IdentifierKind]


class IdentifierSet(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Identifiers a backend links to one customer in an upsert."""

    phone: str | None = None
    email: str | None = None
    wa_id: str | None = None
    rcs: str | None = None


class CustomerUpsert(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``PUT /v1/customers/{external_id}``."""

    identifiers: IdentifierSet = msgspec.field(default_factory=IdentifierSet)
    attributes: Attributes = msgspec.field(default_factory=Attributes)


class PreferencesBody(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``PUT /v1/customers/{id}/preferences``: per message type, channel order and opt-outs."""

    preferences: dict[str, dict[str, object]]

    def typed(self) -> dict[str, TypePreference]:
        """Each type's preference validated on its own, so an error names the message type."""
        typed: dict[str, TypePreference] = {}
        for message_type, raw in self.preferences.items():
            try:
                typed[message_type] = msgspec.convert(raw, TypePreference)
            except msgspec.ValidationError as exc:
                error = validation_error(exc)
                suffix = (
                    f".{error.field}"
                    if error.field and not error.field.startswith("[")
                    else error.field or ""
                )
                raise ApiError(422, error.code, error.message, f"preferences.{message_type}{suffix}") from exc
        return typed


class UpsertResult(msgspec.Struct):
    """The customer after an upsert, and whether it was created."""

    customer: Profile
    created: bool


class CustomerList(msgspec.Struct):
    """Customers found by one identifier (zero or one)."""

    data: list[Profile]


def _normalised(kind: str, raw: str, field: str) -> Identifier:
    try:
        return identifier(kind, raw)
    except InvalidIdentifier as exc:
        raise ApiError(422, "invalid_identifier", str(exc), field) from exc


async def resolve_customer_id(services: Services, customer_id: str) -> str:
    """The customer's current id, following merge redirects; 404 when unknown."""
    customer_id = await follow_one(services.redis, services.keys, customer_id)
    if not await services.redis.exists(services.keys.customer(customer_id)):
        raise ApiError(404, "customer_not_found", "no customer with this id")
    return customer_id


@routes.api(
    "GET",
    "/v1/customers",
    "findCustomers",
    "Customers matching exactly one identifier",
    "customers",
    Scope.READ,
    (200, "Matching customers", CustomerList),
    (422,),
    params=tuple(Param(kind, "query", _STRING, f"Find by {kind}") for kind in LOOKUP_KINDS),
)
async def find_customers(request: web.Request) -> web.Response:
    """Customers matching one identifier: ``?phone=``, ``?email=``, ``?wa_id=``, ``?rcs=`` or ``?external_id=``."""
    services = request.app[SERVICES]
    query = query_params(request)
    given = [(kind, raw) for kind in LOOKUP_KINDS if (raw := query.text(kind)) is not None]
    if len(given) != 1:
        raise ApiError(
            422,
            "missing_query",
            f"give exactly one identifier to search by: {', '.join(LOOKUP_KINDS)}",
            "phone",
        )
    kind, raw = given[0]
    ident = _normalised(kind, raw, kind)
    customer_id = await services.reader.find_customer_id(ident)
    profile = await read_profile(services.redis, services.keys, customer_id) if customer_id else None
    return json_response(CustomerList([profile] if profile else []))


# The path segment is the backend's external id; it keeps the name the other customer routes
# use, since OpenAPI counts paths that differ only in a parameter's name as one path.
@routes.api(
    "PUT",
    "/v1/customers/{customer_id}",
    "upsertCustomer",
    "Create or update the customer the backend knows by this external id",
    "customers",
    Scope.SEND,
    (200, "Updated (201 when created)", UpsertResult),
    (409, 422),
    also_ok=(201,),
    body=CustomerUpsert,
    params=(Param("customer_id", "path", _STRING, "Your external id for the customer", True),),
)
async def upsert_customer(request: web.Request) -> web.Response:
    """Create or update the customer the backend knows as ``external_id``, linking every identifier given."""
    services = request.app[SERVICES]
    external = _normalised("external_id", request.match_info["customer_id"], "external_id")
    body = decode_json_body(await request.read(), CustomerUpsert)
    try:
        validate_attributes(body.attributes)
    except InvalidAttribute as exc:
        raise ApiError(422, "validation_failed", str(exc), exc.field) from exc
    identifiers = [external]
    for kind in ("phone", "email", "wa_id", "rcs"):
        raw = getattr(body.identifiers, kind)
        if raw is not None:
            identifiers.append(_normalised(kind, raw, f"identifiers.{kind}"))
    owners = await services.redis.mget([services.keys.identity(i) for i in identifiers])
    owner = next((o.decode() for o in owners if o), None)
    home = shard_for_customer(owner, services.slot_map) if owner else None
    shard = home if home is not None else shard_for_identifier(external, services.slot_map)
    command = UpsertRequest(identifiers, body.attributes.flat(), services.clock())
    reply = await call_shard(
        services,
        shard,
        "upsert_profile",
        encode_command(command),
        decode_upsert_reply,
        lambda r: r.wrong_shard,
    )
    if reply.conflict is not None:
        conflict = reply.conflict
        raise ApiError(
            409,
            "identifier_conflict",
            f"{conflict.identifier.kind.value} {conflict.identifier.value} already belongs to customer {conflict.owner}",
            f"identifiers.{conflict.identifier.kind.value}",
            details={"customer_ids": sorted({conflict.owner, conflict.claimant} - {""})},
        )
    profile = await read_profile(services.redis, services.keys, reply.customer_id)
    if profile is None:  # merged away between the shard's answer and this read
        raise ApiError(404, "customer_not_found", "the customer was merged into another; retry")
    return json_response(UpsertResult(profile, reply.created), status=201 if reply.created else 200)


@routes.api(
    "GET",
    "/v1/customers/{customer_id}",
    "getCustomer",
    "A customer's profile",
    "customers",
    Scope.READ,
    (200, "The customer", Profile),
    (404,),
    params=(CUSTOMER_ID,),
)
async def get_customer(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    customer_id = await resolve_customer_id(services, request.match_info["customer_id"])
    return json_response(await read_profile(services.redis, services.keys, customer_id))


def _validate_preferences(services: Services, preferences: dict[str, TypePreference]) -> None:
    known = services.config.message_types
    for message_type, preference in preferences.items():
        if message_type not in known:
            raise ApiError(
                422,
                "unknown_message_type",
                f"message types are: {', '.join(known)}",
                f"preferences.{message_type}",
            )
        if len(set(preference.order)) != len(preference.order):
            raise ApiError(
                422,
                "validation_failed",
                "a channel appears twice in order",
                f"preferences.{message_type}.order",
            )


@routes.api(
    "PUT",
    "/v1/customers/{customer_id}/preferences",
    "putPreferences",
    "Replace per-type channel order and opt-outs",
    "customers",
    Scope.CUSTOMERS_WRITE,
    (200, "The stored preferences and the changes", ANY_OBJECT),
    (404, 422),
    body=PreferencesBody,
    params=(CUSTOMER_ID,),
)
async def put_preferences(request: web.Request) -> web.Response:
    """Replace the customer's per-type channel order and opt-outs; each opt-out change is audited."""
    services = request.app[SERVICES]
    customer_id = await resolve_customer_id(services, request.match_info["customer_id"])
    preferences = decode_json_body(await request.read(), PreferencesBody).typed()
    _validate_preferences(services, preferences)
    reply = await set_preferences(services, customer_id, preferences, "api")
    return json_response(
        {"customer_id": customer_id, "preferences": reply.preferences, "changes": reply.changes}
    )


async def set_preferences(
    services: Services, customer_id: str, preferences: dict[str, TypePreference], source: str
):
    """Ask the customer's home shard to store new preferences (shared by the API and the page)."""
    shard = shard_for_customer(customer_id, services.slot_map)
    if shard is None:
        raise ApiError(404, "customer_not_found", "no customer with this id")
    command = PreferencesRequest(customer_id, preferences, source, services.clock())
    reply = await call_shard(
        services,
        shard,
        "set_preferences",
        encode_command(command),
        decode_preferences_reply,
        lambda r: r.wrong_shard,
    )
    if reply.not_found:
        raise ApiError(404, "customer_not_found", "no customer with this id")
    return reply


@routes.api(
    "GET",
    "/v1/customers/{customer_id}/preferences",
    "getPreferences",
    "The customer's preferences",
    "customers",
    Scope.READ,
    (200, "The preferences", ANY_OBJECT),
    (404,),
    params=(CUSTOMER_ID,),
)
async def get_preferences(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    customer_id = await resolve_customer_id(services, request.match_info["customer_id"])
    blob = await services.redis.get(services.keys.preferences(customer_id))
    preferences = decode_preferences(blob) if blob else Preferences()
    return json_response({"customer_id": customer_id, "preferences": preferences})


@routes.api(
    "GET",
    "/v1/customers/{customer_id}/consent",
    "getConsentLog",
    "Every consent change recorded for the customer",
    "customers",
    Scope.READ,
    (200, "The consent log, oldest first", ANY_OBJECT),
    (404,),
    params=(CUSTOMER_ID,),
)
async def get_consent_log(request: web.Request) -> web.Response:
    """Every consent change ever recorded for the customer, oldest first."""
    services = request.app[SERVICES]
    customer_id = await resolve_customer_id(services, request.match_info["customer_id"])
    raw = await services.redis.xrange(services.keys.consent_log(customer_id))
    return json_response(
        {"customer_id": customer_id, "data": [decode_consent_change(f[b"d"]) for _, f in raw]}
    )


@routes.api(
    "GET",
    "/v1/stats/preferences",
    "preferenceStats",
    "Preference adoption per message type and channel",
    "stats",
    Scope.READ,
    (200, "Counts", ANY_OBJECT),
)
async def preference_adoption(request: web.Request) -> web.Response:
    """How many customers set preferences, and their first choices and opt-outs per type and channel."""
    services = request.app[SERVICES]
    raw = await services.redis.hgetall(services.keys.preference_stats())
    counts = {k.decode(): int(v) for k, v in raw.items() if int(v)}
    by_type: dict[str, dict[str, dict[str, int]]] = {}
    for field, count in counts.items():
        if field.count(":") != 2:
            continue
        message_type, channel, what = field.split(":")
        by_type.setdefault(message_type, {}).setdefault(channel, {})[what] = count
    return json_response(
        {"customers_with_preferences": counts.get("customers_with_preferences", 0), "by_type": by_type}
    )


def _thread_filter(query: QueryParams) -> ThreadFilter:
    """``?channel=sms,whatsapp&direction=inbound&since=…&until=…`` (times: unix seconds or ISO 8601)."""
    return ThreadFilter(
        query.choices("channel", Channel),
        query.choice("direction", Direction),
        query.instant("since"),
        query.instant("until"),
    )


@routes.api(
    "GET",
    "/v1/customers/{customer_id}/thread",
    "getThread",
    "The customer's one thread, all channels, oldest first",
    "customers",
    Scope.READ,
    (200, "One page of the thread (or NDJSON with Accept: application/x-ndjson)", ThreadPage),
    (404, 422),
    params=(
        CUSTOMER_ID,
        Param("cursor", "query", _STRING, "`next_cursor` of the previous page"),
        Param(
            "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}
        ),
        Param("channel", "query", _STRING, "Comma-separated channels"),
        Param("direction", "query", {"enum": ["inbound", "outbound"]}),
        Param("since", "query", _STRING, "Unix seconds or ISO 8601"),
        Param("until", "query", _STRING, "Unix seconds or ISO 8601"),
    ),
)
async def get_thread(request: web.Request) -> web.StreamResponse:
    """The customer's thread, oldest first, filtered; ``?cursor=`` from ``next_cursor`` pages on.

    With ``Accept: application/x-ndjson`` the whole (filtered) thread streams as one entry per line.
    """
    services = request.app[SERVICES]
    query = query_params(request)
    cursor = query.stream_id("cursor", "a next_cursor value")
    limit = query.integer("limit", default=DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
    filters = _thread_filter(query)
    customer_id = await resolve_customer_id(services, request.match_info["customer_id"])
    if "application/x-ndjson" in request.headers.get("Accept", ""):
        return await _export_ndjson(request, services, customer_id, cursor, filters)
    page = await services.reader.page(customer_id, cursor, limit, filters)
    return json_response(page)


async def _export_ndjson(
    request: web.Request, services: Services, customer_id: str, cursor: str | None, filters: ThreadFilter
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    while True:
        page = await services.reader.page(customer_id, cursor, MAX_PAGE, filters)
        if page.entries:
            await response.write(b"".join(msgspec.json.encode(e) + b"\n" for e in page.entries))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    await response.write_eof()
    return response


class MergeBody(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/customers/{id}/merge``: the customer to fold into this one."""

    other: str


@routes.api(
    "POST",
    "/v1/customers/{customer_id}/merge",
    "mergeCustomers",
    "Merge another customer into this one (idempotent)",
    "customers",
    Scope.CUSTOMERS_WRITE,
    (200, "What the merge did", MergeResult),
    (404, 409, 422),
    body=MergeBody,
    params=(CUSTOMER_ID,),
)
async def merge_customers(request: web.Request) -> web.Response:
    """Merge ``other`` into this customer (idempotent); the other id redirects here afterwards."""
    services = request.app[SERVICES]
    body = decode_json_body(await request.read(), MergeBody)
    winner = await resolve_customer_id(services, request.match_info["customer_id"])
    done = await services.redis.get(services.keys.merge_result(body.other))
    if done is not None:
        result = decode_merge_result(done)
        if result.winner == winner:
            return json_response(result)
    loser = await _resolve_for_merge(services, body.other)
    if loser == winner:
        raise ApiError(422, "same_customer", "a customer cannot be merged into itself", "other")
    shard = shard_for_customer(winner, services.slot_map)
    assert shard is not None  # resolve_customer_id only returns ids of existing customers
    command = MergeRequest(winner, loser, services.clock())
    reply = await call_shard(
        services, shard, "merge", encode_command(command), decode_merge_reply, lambda r: r.wrong_shard
    )
    if reply.refused_code:
        status = 409 if reply.refused_code in ("merge_in_progress", "already_merged") else 404
        raise ApiError(status, reply.refused_code, reply.refused_message, "other")
    return json_response(reply.result)


async def _resolve_for_merge(services: Services, customer_id: str) -> str:
    try:
        return await resolve_customer_id(services, customer_id)
    except ApiError as exc:
        raise ApiError(404, "customer_not_found", "no customer with the id given as other", "other") from exc
