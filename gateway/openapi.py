"""``GET /openapi.json``: an OpenAPI 3.1 document built from the msgspec structs and a route table.

Schemas come from ``msgspec.json.schema_components`` over the very structs the handlers decode
and encode, so the document cannot drift from the wire format; only which route takes and
returns which struct is written here, in ``OPERATIONS``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import msgspec
from aiohttp import web

from conversations.access import Scope
from conversations.models import Customer, MessageRecord
from conversations.thread import ThreadPage
from gateway.errors import ErrorEnvelope
from gateway.routes.customers import CustomerList
from gateway.routes.health import Readiness
from gateway.routes.messages import Accepted, SendMessage

routes = web.RouteTableDef()

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
XML = "text/xml"


class TwilioInboundForm(msgspec.Struct):
    """The form Twilio posts for an inbound SMS/MMS/WhatsApp message (the fields we read)."""

    MessageSid: str
    From: str
    To: str = ""
    Body: str = ""
    AccountSid: str = ""
    NumMedia: str = "0"
    NumSegments: str = ""
    MediaUrl0: str = ""
    MediaContentType0: str = ""
    ProfileName: str = ""
    WaId: str = ""
    SmsMessageSid: str = ""
    SmsSid: str = ""
    ApiVersion: str = ""


class TwilioStatusForm(msgspec.Struct):
    """The form Twilio posts as a message status callback."""

    MessageSid: str
    MessageStatus: Literal[
        "accepted",
        "scheduled",
        "queued",
        "sending",
        "sent",
        "delivered",
        "read",
        "undelivered",
        "failed",
        "canceled",
    ]
    To: str = ""
    From: str = ""
    AccountSid: str = ""
    ErrorCode: str = ""
    SmsSid: str = ""
    SmsStatus: str = ""


class Health(msgspec.Struct):
    """Liveness answer."""

    status: str


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter."""

    name: str
    where: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """One route: what it takes, what it answers, and who may call it."""

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    responses: dict[int, tuple[str, Any, str]]  # status -> (description, struct or None, media type)
    scope: Scope | None = None  # None: no API key (public, or signed by a provider)
    body: type | None = None
    body_media: str = JSON
    params: tuple[Param, ...] = ()
    twilio_signed: bool = False
    response_headers: dict[int, tuple[str, ...]] = field(default_factory=dict)


def _errors(*statuses: int) -> dict[int, tuple[str, Any, str]]:
    described = {
        400: "Malformed request (bad JSON, JSON too deep, bad header)",
        401: "Missing or unknown API key",
        403: "The key lacks the scope, or the provider signature does not match",
        404: "No such resource",
        409: "A request with this Idempotency-Key is still running",
        413: "Request body larger than 1 MiB",
        415: "Wrong content type",
        422: "Well-formed but invalid input; `field` names it",
        429: "Rate limit of this API key reached; see Retry-After",
        503: "The message store is unreachable; nothing was stored, retry after Retry-After",
    }
    return {status: (described[status], ErrorEnvelope, JSON) for status in statuses}


_API_ERRORS = (401, 403, 429, 503)
_RETRY_AFTER: dict[int, tuple[str, ...]] = {
    429: ("Retry-After",),
    503: ("Retry-After",),
    409: ("Retry-After",),
}
_CUSTOMER_ID = Param("customer_id", "path", {"type": "string"}, "A customer id (cus_…)", True)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/messages",
        "sendMessage",
        "Send a message to a customer (durable before 202)",
        "messages",
        {
            202: ("Accepted; the message is stored on the customer's shard", Accepted, JSON),
            **_errors(400, 409, 413, 422, *_API_ERRORS),
        },
        scope=Scope.SEND,
        body=SendMessage,
        params=(
            Param(
                "Idempotency-Key",
                "header",
                {"type": "string", "minLength": 1, "maxLength": 255},
                "Retries with the same key and body get the first response again",
            ),
        ),
        response_headers=_RETRY_AFTER,
    ),
    Operation(
        "GET",
        "/v1/messages/{message_id}",
        "getMessage",
        "One message with its status history",
        "messages",
        {200: ("The message", MessageRecord, JSON), **_errors(404, *_API_ERRORS)},
        scope=Scope.READ,
        params=(Param("message_id", "path", {"type": "string"}, "A message id (msg_…)", True),),
        response_headers=_RETRY_AFTER,
    ),
    Operation(
        "GET",
        "/v1/customers",
        "findCustomers",
        "Customers matching an identifier",
        "customers",
        {200: ("Matching customers", CustomerList, JSON), **_errors(422, *_API_ERRORS)},
        scope=Scope.READ,
        params=(Param("phone", "query", {"type": "string"}, "A phone number (E.164 or national)", True),),
        response_headers=_RETRY_AFTER,
    ),
    Operation(
        "GET",
        "/v1/customers/{customer_id}",
        "getCustomer",
        "A customer's profile",
        "customers",
        {200: ("The customer", Customer, JSON), **_errors(404, *_API_ERRORS)},
        scope=Scope.READ,
        params=(_CUSTOMER_ID,),
        response_headers=_RETRY_AFTER,
    ),
    Operation(
        "GET",
        "/v1/customers/{customer_id}/thread",
        "getThread",
        "The customer's one thread, all channels, oldest first",
        "customers",
        {200: ("One page of the thread", ThreadPage, JSON), **_errors(404, 422, *_API_ERRORS)},
        scope=Scope.READ,
        params=(
            _CUSTOMER_ID,
            Param("cursor", "query", {"type": "string"}, "`next_cursor` of the previous page"),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        ),
        response_headers=_RETRY_AFTER,
    ),
    Operation(
        "POST",
        "/webhooks/twilio/sms",
        "twilioInboundMessage",
        "Twilio inbound message webhook (signed with X-Twilio-Signature)",
        "webhooks",
        {
            200: ("Stored; empty TwiML", None, XML),
            **_errors(400, 403, 413, 415, 503),
        },
        body=TwilioInboundForm,
        body_media=FORM,
        twilio_signed=True,
        response_headers={503: ("Retry-After",)},
    ),
    Operation(
        "POST",
        "/webhooks/twilio/sms/status",
        "twilioMessageStatus",
        "Twilio message status callback (signed with X-Twilio-Signature)",
        "webhooks",
        {
            200: ("Stored; empty TwiML", None, XML),
            **_errors(400, 403, 413, 415, 503),
        },
        body=TwilioStatusForm,
        body_media=FORM,
        twilio_signed=True,
        params=(
            Param("mid", "query", {"type": "string"}, "Our message id (set in the StatusCallback URL)", True),
            Param(
                "cid", "query", {"type": "string"}, "Our customer id (set in the StatusCallback URL)", True
            ),
        ),
        response_headers={503: ("Retry-After",)},
    ),
    Operation(
        "GET",
        "/healthz",
        "healthz",
        "Liveness: the process is up",
        "operations",
        {200: ("Up", Health, JSON)},
    ),
    Operation(
        "GET",
        "/readyz",
        "readyz",
        "Readiness: Redis and every shard actor answer",
        "operations",
        {200: ("Ready", Readiness, JSON), 503: ("Not ready", Readiness, JSON)},
    ),
    Operation(
        "GET",
        "/openapi.json",
        "openapi",
        "This document",
        "operations",
        {200: ("The OpenAPI 3.1 document", None, JSON)},
    ),
)


def _version() -> str:
    try:
        return metadata.version("threadline")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_document(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations``."""
    structs: list[Any] = []
    for op in operations:
        if op.body is not None:
            structs.append(op.body)
        structs.extend(struct for _, struct, _ in op.responses.values() if struct is not None)
    structs = list(dict.fromkeys(structs))
    refs, components = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
    schema_of = dict(zip(structs, refs, strict=True))

    for op in operations:
        if op.body is not None and op.body_media == FORM:
            # Providers add fields over time and we ignore the ones we do not read.
            components[op.body.__name__]["additionalProperties"] = {"type": "string"}

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {},
        }
        if op.scope is not None:
            operation["security"] = [{"apiKey": []}]
            operation["description"] = f"Needs an API key with the `{op.scope.value}` scope (or `admin`)."
        elif op.twilio_signed:
            operation["security"] = [{"twilioSignature": []}]
        else:
            operation["security"] = []
        if op.params:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required,
                    "schema": p.schema,
                    **({"description": p.description} if p.description else {}),
                }
                for p in op.params
            ]
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {op.body_media: {"schema": schema_of[op.body]}},
            }
        for status, (description, struct, media) in sorted(op.responses.items()):
            schema = schema_of[struct] if struct is not None else {"type": "string"}
            if struct is None and media == JSON:
                schema = {"type": "object"}
            response: dict[str, Any] = {"description": description, "content": {media: {"schema": schema}}}
            headers = op.response_headers.get(status)
            if headers:
                response["headers"] = {
                    name: {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
                    for name in headers
                }
            operation["responses"][str(status)] = response
        paths.setdefault(op.path, {})[op.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Threadline",
            "version": _version(),
            "description": "Omnichannel conversation gateway: one customer, one thread, every channel.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
                "twilioSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Twilio-Signature",
                    "description": "HMAC of the public URL and form parameters with the Twilio auth token",
                },
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The document, encoded once (it only depends on the code)."""
    return msgspec.json.encode(build_document())


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this gateway (no API key needed)."""
    return web.Response(body=document_bytes(), content_type=JSON)
