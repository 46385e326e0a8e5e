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

from channels.email_inbound import InboundEmailReceived, SendGridInboundForm
from channels.rcs_rbm import WebhookBody as RbmWebhookBody
from channels.sms_twilio import TwilioInboundForm, TwilioStatusForm
from channels.voice_twilio import TwilioVoiceForm
from channels.whatsapp_cloud import Received
from channels.whatsapp_cloud import WebhookBody as WhatsAppWebhookBody
from conversations.access import Scope
from conversations.merge import MergeResult
from conversations.models import MessageRecord
from conversations.profiles import Profile
from conversations.thread import ThreadPage
from gateway.errors import ErrorEnvelope
from gateway.message_requests import SendMessage
from gateway.routes.console import CreatedAgent, NewAgent
from gateway.routes.customers import CustomerUpsert, MergeBody, PreferencesBody
from gateway.routes.events import BatchBody, EventAccepted, EventBody
from gateway.routes.health import Readiness
from gateway.routes.messages import Accepted
from gateway.routes.preference_page import PreferenceLink

routes = web.RouteTableDef()

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
XML = "text/xml"


class CustomerList(msgspec.Struct):
    """Customers found by one identifier (zero or one)."""

    data: list[Profile]


class UpsertResult(msgspec.Struct):
    """The customer after an upsert, and whether it was created."""

    customer: Profile
    created: bool


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


_API_ERRORS = (400, 401, 403, 413, 429, 503)
_RETRY_AFTER: dict[int, tuple[str, ...]] = {
    429: ("Retry-After",),
    503: ("Retry-After",),
    409: ("Retry-After",),
}
_HOOK_ERRORS = (400, 403, 413, 415, 503)
_HOOK_HEADERS: dict[int, tuple[str, ...]] = {503: ("Retry-After",)}
_CUSTOMER_ID = Param("customer_id", "path", {"type": "string"}, "A customer id (cus_…)", True)
_STRING = {"type": "string"}
_OBJECT = dict  # a JSON object whose shape is not (yet) a struct


def _api(
    method: str,
    path: str,
    operation_id: str,
    summary: str,
    tag: str,
    scope: Scope,
    ok: tuple[int, str, Any],
    errors: tuple[int, ...] = (),
    body: type | None = None,
    params: tuple[Param, ...] = (),
    also_ok: tuple[int, ...] = (),
) -> Operation:
    """A ``/v1`` operation: API key with ``scope``, JSON in and out."""
    status, description, struct = ok
    answers = {code: (description, struct, JSON) for code in (status, *also_ok)}
    return Operation(
        method,
        path,
        operation_id,
        summary,
        tag,
        {**answers, **_errors(*errors, *_API_ERRORS)},
        scope=scope,
        body=body,
        params=params,
        response_headers=_RETRY_AFTER,
    )


def _hook(
    method: str,
    path: str,
    operation_id: str,
    summary: str,
    ok: tuple[str, Any, str],
    body: type | None,
    media: str,
    params: tuple[Param, ...] = (),
    twilio_signed: bool = False,
) -> Operation:
    """A provider webhook: signed by the provider, answered in the provider's format."""
    return Operation(
        method,
        path,
        operation_id,
        summary,
        "webhooks",
        {200: ok, **_errors(*_HOOK_ERRORS)},
        body=body,
        body_media=media,
        params=params,
        twilio_signed=twilio_signed,
        response_headers=_HOOK_HEADERS,
    )


_MID_CID = (
    Param("mid", "query", _STRING, "Our message id (set in the callback URL)", True),
    Param("cid", "query", _STRING, "Our customer id (set in the callback URL)", True),
)
_TWIML = ("Stored; TwiML", None, XML)

_JOURNEY_NAME = Param("name", "path", _STRING, "The journey's name", True)

OPERATIONS: tuple[Operation, ...] = (
    _api(
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
    ),
    _api(
        "POST",
        "/v1/events:batch",
        "recordEvents",
        "Record up to 1,000 events; each item gets its own result",
        "events",
        Scope.SEND,
        (202, "One result per event", _OBJECT),
        (404, 422),
        body=BatchBody,
        also_ok=(200, 207),
    ),
    _api(
        "GET",
        "/v1/journeys",
        "listJourneys",
        "Journeys with versions and status",
        "journeys",
        Scope.READ,
        (200, "The journeys", _OBJECT),
    ),
    _api(
        "GET",
        "/v1/journeys/{name}",
        "getJourney",
        "One journey definition (current version)",
        "journeys",
        Scope.READ,
        (200, "The definition", _OBJECT),
        (404,),
        params=(_JOURNEY_NAME,),
    ),
    _api(
        "PUT",
        "/v1/journeys/{name}",
        "putJourney",
        "Publish a new version of a journey",
        "journeys",
        Scope.ADMIN,
        (200, "The stored version", _OBJECT),
        (404, 422),
        body=_OBJECT,
        params=(_JOURNEY_NAME,),
        also_ok=(201,),
    ),
    _api(
        "GET",
        "/v1/journeys/{name}/stats",
        "journeyStats",
        "Entered, active, completed, converted, exited, per step",
        "journeys",
        Scope.READ,
        (200, "Counters", _OBJECT),
        (404,),
        params=(_JOURNEY_NAME,),
    ),
    _api(
        "GET",
        "/v1/customers/{customer_id}/journeys",
        "customerJourneys",
        "The customer's journey instances and where each stands",
        "journeys",
        Scope.READ,
        (200, "Instances", _OBJECT),
        (404,),
        params=(_CUSTOMER_ID,),
    ),
    _api(
        "POST",
        "/v1/messages",
        "sendMessage",
        "Send a message to a customer (durable before 202)",
        "messages",
        Scope.SEND,
        (202, "Accepted; the message is stored on the customer's shard", Accepted),
        (409, 422),
        body=SendMessage,
        params=(
            Param(
                "Idempotency-Key",
                "header",
                {"type": "string", "minLength": 1, "maxLength": 255},
                "Retries with the same key and body get the first response again",
            ),
        ),
    ),
    _api(
        "GET",
        "/v1/messages/{message_id}",
        "getMessage",
        "One message with its status history",
        "messages",
        Scope.READ,
        (200, "The message", MessageRecord),
        (404,),
        params=(Param("message_id", "path", _STRING, "A message id (msg_…)", True),),
    ),
    _api(
        "GET",
        "/v1/customers",
        "findCustomers",
        "Customers matching exactly one identifier",
        "customers",
        Scope.READ,
        (200, "Matching customers", CustomerList),
        (422,),
        params=tuple(
            Param(kind, "query", _STRING, f"Find by {kind}")
            for kind in ("phone", "email", "wa_id", "rcs", "external_id")
        ),
    ),
    _api(
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
    ),
    _api(
        "GET",
        "/v1/customers/{customer_id}",
        "getCustomer",
        "A customer's profile",
        "customers",
        Scope.READ,
        (200, "The customer", Profile),
        (404,),
        params=(_CUSTOMER_ID,),
    ),
    _api(
        "PUT",
        "/v1/customers/{customer_id}/preferences",
        "putPreferences",
        "Replace per-type channel order and opt-outs",
        "customers",
        Scope.SEND,
        (200, "The stored preferences and the changes", _OBJECT),
        (404, 422),
        body=PreferencesBody,
        params=(_CUSTOMER_ID,),
    ),
    _api(
        "GET",
        "/v1/customers/{customer_id}/preferences",
        "getPreferences",
        "The customer's preferences",
        "customers",
        Scope.READ,
        (200, "The preferences", _OBJECT),
        (404,),
        params=(_CUSTOMER_ID,),
    ),
    _api(
        "GET",
        "/v1/customers/{customer_id}/consent",
        "getConsentLog",
        "Every consent change recorded for the customer",
        "customers",
        Scope.READ,
        (200, "The consent log, oldest first", _OBJECT),
        (404,),
        params=(_CUSTOMER_ID,),
    ),
    _api(
        "GET",
        "/v1/customers/{customer_id}/thread",
        "getThread",
        "The customer's one thread, all channels, oldest first",
        "customers",
        Scope.READ,
        (200, "One page of the thread (or NDJSON with Accept: application/x-ndjson)", ThreadPage),
        (404, 422),
        params=(
            _CUSTOMER_ID,
            Param("cursor", "query", _STRING, "`next_cursor` of the previous page"),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
            Param("channel", "query", _STRING, "Comma-separated channels"),
            Param("direction", "query", {"enum": ["inbound", "outbound"]}),
            Param("since", "query", _STRING, "Unix seconds or ISO 8601"),
            Param("until", "query", _STRING, "Unix seconds or ISO 8601"),
        ),
    ),
    _api(
        "POST",
        "/v1/customers/{customer_id}/merge",
        "mergeCustomers",
        "Merge another customer into this one (idempotent)",
        "customers",
        Scope.SEND,
        (200, "What the merge did", MergeResult),
        (404, 409, 422),
        body=MergeBody,
        params=(_CUSTOMER_ID,),
    ),
    _api(
        "POST",
        "/v1/customers/{customer_id}/preference-link",
        "createPreferenceLink",
        "A signed, expiring link to the hosted preference page",
        "customers",
        Scope.SEND,
        (201, "The link", PreferenceLink),
        (404,),
        params=(_CUSTOMER_ID,),
    ),
    _api(
        "GET",
        "/v1/stats/preferences",
        "preferenceStats",
        "Preference adoption per message type and channel",
        "stats",
        Scope.READ,
        (200, "Counts", _OBJECT),
    ),
    Operation(
        "POST",
        "/v1/agents",
        "createAgent",
        "Create a console agent; its token is shown once",
        "console",
        {201: ("The agent and its token", CreatedAgent, JSON), **_errors(409, 422, *_API_ERRORS)},
        scope=Scope.ADMIN,
        body=NewAgent,
        response_headers=_RETRY_AFTER,
    ),
    Operation(
        "GET",
        "/v1/console/ws",
        "consoleSocket",
        "The agent console WebSocket (upgrade; agent token in the first frame or header)",
        "console",
        {
            101: ("Switching to the WebSocket protocol", None, JSON),
            **_errors(400, 403, 429, 503),
        },
    ),
    _hook(
        "POST",
        "/webhooks/twilio/sms",
        "twilioInboundMessage",
        "Twilio inbound message (signed with X-Twilio-Signature)",
        ("Stored; empty TwiML", None, XML),
        TwilioInboundForm,
        FORM,
        twilio_signed=True,
    ),
    _hook(
        "POST",
        "/webhooks/twilio/sms/status",
        "twilioMessageStatus",
        "Twilio message status callback (signed with X-Twilio-Signature)",
        ("Stored; empty TwiML", None, XML),
        TwilioStatusForm,
        FORM,
        params=_MID_CID,
        twilio_signed=True,
    ),
    _hook(
        "POST",
        "/webhooks/twilio/voice",
        "twilioIncomingCall",
        "Twilio incoming call (signed); answered with a TwiML Gather",
        ("TwiML", None, XML),
        TwilioVoiceForm,
        FORM,
        twilio_signed=True,
    ),
    _hook(
        "POST",
        "/webhooks/twilio/voice/gather",
        "twilioGatherResult",
        "What the caller said or pressed (signed)",
        ("TwiML", None, XML),
        TwilioVoiceForm,
        FORM,
        params=(Param("seq", "query", {"type": "integer", "minimum": 1}, "Turn number", True),),
        twilio_signed=True,
    ),
    _hook(
        "POST",
        "/webhooks/twilio/voice/status",
        "twilioCallStatus",
        "Twilio call status callback (signed)",
        _TWIML,
        TwilioVoiceForm,
        FORM,
        params=_MID_CID,
        twilio_signed=True,
    ),
    Operation(
        "GET",
        "/webhooks/whatsapp",
        "whatsappVerify",
        "Meta's subscription check: echoes hub.challenge",
        "webhooks",
        {200: ("The challenge", None, "text/plain"), **_errors(400, 403)},
        params=(
            Param("hub.mode", "query", _STRING),
            Param("hub.verify_token", "query", _STRING),
            Param("hub.challenge", "query", _STRING),
        ),
    ),
    _hook(
        "POST",
        "/webhooks/whatsapp",
        "whatsappWebhook",
        "WhatsApp Cloud API messages and statuses (X-Hub-Signature-256)",
        ("Stored", Received, JSON),
        WhatsAppWebhookBody,
        JSON,
    ),
    _hook(
        "POST",
        "/webhooks/rcs",
        "rbmWebhook",
        "Google RBM verification, messages and events (X-Goog-Signature)",
        ("Stored (or the verification secret as text)", None, "text/plain"),
        RbmWebhookBody,
        JSON,
    ),
    _hook(
        "POST",
        "/webhooks/email/inbound",
        "emailInbound",
        "An email, as SendGrid Inbound Parse posts it (secret in ?secret= or basic auth)",
        ("Stored", InboundEmailReceived, JSON),
        SendGridInboundForm,
        "multipart/form-data",
        params=(Param("secret", "query", _STRING, "The inbound parse secret"),),
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
        {200: ("The OpenAPI 3.1 document", _OBJECT, JSON)},
    ),
)


def _version() -> str:
    try:
        return metadata.version("threadline")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _any_schema(type_: Any) -> dict[str, Any]:
    """``object`` fields take any JSON value; other custom types are a bug to fix here."""
    if type_ is object:
        return {"description": "any JSON value"}
    raise TypeError(f"no JSON schema for {type_!r}")


def build_document(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations``."""
    structs: list[Any] = []
    for op in operations:
        if op.body is not None:
            structs.append(op.body)
        structs.extend(
            struct for _, struct, _ in op.responses.values() if struct is not None and struct is not _OBJECT
        )
    structs = list(dict.fromkeys(structs))
    refs, components = msgspec.json.schema_components(
        structs, schema_hook=_any_schema, ref_template="#/components/schemas/{name}"
    )
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
            response: dict[str, Any] = {"description": description}
            if struct is _OBJECT:
                response["content"] = {media: {"schema": {"type": "object"}}}
            elif struct is not None:
                response["content"] = {media: {"schema": schema_of[struct]}}
            elif status != 101:
                response["content"] = {media: {"schema": {"type": "string"}}}
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
