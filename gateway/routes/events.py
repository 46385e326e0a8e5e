"""``/v1/events``: backends report what customers did; events join the thread and drive journeys."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from conversations.access import Scope
from conversations.codec import encode
from conversations.ids import ulid
from conversations.models import EventReceived, Forwarded, Identifier
from conversations.normalize import InvalidIdentifier, identifier
from conversations.sharding import shard_for_customer, shard_for_identifier
from gateway.endpoints import ANY_OBJECT, GRANT, Endpoints
from gateway.errors import ApiError, ErrorBody, decode_json_body, validation_error
from gateway.routes.customers import resolve_customer_id
from gateway.routes.messages import json_response
from gateway.services import SERVICES, Services

routes = Endpoints()

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 16 * 1024
EventName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
IDENTIFIER_FIELDS = ("phone", "email", "wa_id", "rcs", "external_id")


class CustomerRef(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Who the event is about: our customer id, or exactly one of their identifiers."""

    id: str | None = None
    phone: str | None = None
    email: str | None = None
    wa_id: str | None = None
    rcs: str | None = None
    external_id: str | None = None


class EventBody(msgspec.Struct, forbid_unknown_fields=True):
    """One event, as ``POST /v1/events`` takes it (and each item of a batch)."""

    customer: CustomerRef
    name: EventName
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    occurred_at: datetime | float | None = None  # ISO 8601 or unix seconds; default: now
    idempotency_key: IdempotencyKey | None = None


class BatchBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/events:batch``: items are validated one by one, so one bad item fails alone."""

    events: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class EventAccepted(msgspec.Struct, omit_defaults=True):
    id: str
    status: str  # accepted | duplicate
    customer_shard: int


class EventBatchItem(msgspec.Struct, omit_defaults=True):
    index: int
    status: int  # 202 accepted, 200 duplicate, 4xx rejected
    id: str | None = None
    result: str | None = None
    error: ErrorBody | None = None


class _Prepared(msgspec.Struct):
    shard: int
    payload: bytes
    dedupe: str | None
    event_id: str


async def _prepare(services: Services, body: EventBody, header_key: str | None = None) -> _Prepared:
    """Validate what msgspec cannot, and build the ingest entry with its shard and dedupe key."""
    ref = body.customer
    given = [name for name in ("id", *IDENTIFIER_FIELDS) if getattr(ref, name) is not None]
    if len(given) != 1:
        raise ApiError(
            422,
            "validation_failed",
            "name the customer by exactly one of: id, " + ", ".join(IDENTIFIER_FIELDS),
            "customer",
        )
    if len(msgspec.json.encode(body.properties)) > MAX_PROPERTIES_BYTES:
        raise ApiError(
            422, "validation_failed", f"properties exceed {MAX_PROPERTIES_BYTES} bytes", "properties"
        )
    now = services.clock()
    occurred = _timestamp(body.occurred_at, now)
    key = body.idempotency_key or header_key
    kind = given[0]
    ident: Identifier | None = None
    customer_id = ""
    if kind == "id":
        try:
            customer_id = await resolve_customer_id(services, ref.id or "")
        except ApiError as exc:
            raise ApiError(exc.status, exc.code, exc.message, "customer.id") from exc
        home = shard_for_customer(customer_id, services.slot_map)
        assert home is not None  # resolve_customer_id returns ids of existing customers only
        shard, scope = home, customer_id
    else:
        try:
            ident = identifier(kind, getattr(ref, kind))
        except InvalidIdentifier as exc:
            raise ApiError(422, "invalid_identifier", str(exc), f"customer.{kind}") from exc
        shard, scope = shard_for_identifier(ident, services.slot_map), f"{ident.kind}:{ident.value}"
    # Replays of one idempotency key for one customer reference get the same id back.
    event_id = "evt_" + (_digest(f"{scope}|{key}") if key else ulid(now))
    entry = EventReceived(event_id, body.name, occurred, now, ident, dict(body.properties))
    payload = encode(Forwarded(customer_id, entry) if customer_id else entry)
    return _Prepared(shard, payload, f"event:{_digest(f'{scope}|{key}')}" if key else None, event_id)


def _timestamp(value: datetime | float | None, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@routes.api(
    "POST",
    "/v1/events",
    "recordEvent",
    "Record a backend event for a customer; journeys react to it (durable before 202)",
    "events",
    Scope.SEND,
    (202, "Stored on the customer's shard", EventAccepted),
    (404, 422),
    body=EventBody,
    also_ok=(200,),
)
async def post_event(request: web.Request) -> web.Response:
    """One event: 202 once durable on the customer's shard, 200 ``duplicate`` for a replayed key."""
    services = request.app[SERVICES]
    body = decode_json_body(await request.read(), EventBody)
    prepared = await _prepare(services, body, request.headers.get("Idempotency-Key") or None)
    fresh = await services.ingest.submit(prepared.shard, prepared.payload, prepared.dedupe)
    status = "accepted" if fresh else "duplicate"
    return json_response(
        EventAccepted(prepared.event_id, status, prepared.shard), status=202 if fresh else 200
    )


@routes.api(
    "POST",
    "/v1/events:batch",
    "recordEvents",
    "Record up to 1,000 events; each item gets its own result",
    "events",
    Scope.SEND,
    (202, "One result per event", ANY_OBJECT),
    (404, 422),
    body=BatchBody,
    also_ok=(200, 207),
)
async def post_events_batch(request: web.Request) -> web.Response:
    """Up to 1,000 events; one result per event, in order, each with its own status."""
    services = request.app[SERVICES]
    batch = decode_json_body(await request.read(), BatchBody)
    # Each event costs what one POST /v1/events does; the middleware took the first token.
    await services.rate_limiter.check(request[GRANT], cost=len(batch.events) - 1, taken=1, field="events")
    results: list[EventBatchItem | None] = [None] * len(batch.events)

    def reject(index: int, exc: ApiError) -> None:
        field = f"events[{index}].{exc.field}" if exc.field else f"events[{index}]"
        results[index] = EventBatchItem(index, exc.status, error=ErrorBody(exc.code, exc.message, field))

    decoded: list[tuple[int, EventBody]] = []
    for index, raw in enumerate(batch.events):
        try:
            decoded.append((index, msgspec.json.decode(raw, type=EventBody)))
        except msgspec.ValidationError as exc:
            reject(index, validation_error(exc))
    prepared_all = await asyncio.gather(
        *(_prepare(services, body) for _, body in decoded), return_exceptions=True
    )
    accepted: list[tuple[int, _Prepared]] = []
    for (index, _), prepared in zip(decoded, prepared_all, strict=True):
        if isinstance(prepared, ApiError):
            reject(index, prepared)
        elif isinstance(prepared, BaseException):
            raise prepared  # storage trouble: the middleware answers 503 for the whole batch
        else:
            accepted.append((index, prepared))
    # Submitted together, the entries share the writer's per-shard batches (one Redis call each).
    outcomes = await asyncio.gather(
        *(services.ingest.submit(p.shard, p.payload, p.dedupe) for _, p in accepted), return_exceptions=True
    )
    for (index, prepared), outcome in zip(accepted, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            error = ErrorBody(
                "storage_unavailable", "event store is unreachable; nothing was stored, retry it"
            )
            results[index] = EventBatchItem(index, 503, error=error)
        elif outcome:
            results[index] = EventBatchItem(index, 202, prepared.event_id, "accepted")
        else:
            results[index] = EventBatchItem(index, 200, prepared.event_id, "duplicate")
    items = [r for r in results if r is not None]
    summary = {
        "accepted": sum(1 for r in items if r.status == 202),
        "duplicates": sum(1 for r in items if r.status == 200),
        "rejected": sum(1 for r in items if r.status >= 400),
    }
    return json_response({**summary, "results": items})
