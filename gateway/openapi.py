"""The OpenAPI 3.1 document, built from the routes as declared (``gateway.endpoints``).

Schemas come from ``msgspec.json.schema_components`` over the very structs the handlers and
webhook parsers decode and encode, and the operations are the declarations the app mounts,
so the document cannot drift from the wire format or from the routes served.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import msgspec

from conversations.access import Scope
from gateway.endpoints import ANY_OBJECT, FORM, Endpoint, Security
from gateway.surface import declared_endpoints


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


def scope_description(scope: Scope) -> str:
    """Which API keys may call an operation: its scope, and ``admin``, which grants every scope."""
    if scope is Scope.ADMIN:
        return "Needs an API key with the `admin` scope."
    return f"Needs an API key with the `{scope.value}` or the `admin` scope."


def build_document(operations: Sequence[Endpoint] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations`` (default: every route the gateway declares)."""
    if operations is None:
        operations = declared_endpoints()
    structs: list[Any] = []
    for op in operations:
        if op.body is not None:
            structs.append(op.body)
        structs.extend(
            struct
            for _, struct, _ in op.responses.values()
            if struct is not None and struct is not ANY_OBJECT
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
        operation["security"] = [] if op.security is Security.NONE else [{op.security.value: []}]
        if op.scope is not None:
            operation["description"] = scope_description(op.scope)
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
            if struct is ANY_OBJECT:
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
