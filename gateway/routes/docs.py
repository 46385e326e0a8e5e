"""``GET /openapi.json``: the document the app factory built from every declared route."""

from __future__ import annotations

from aiohttp import web

from gateway.endpoints import ANY_OBJECT, JSON, Endpoint, Endpoints

routes = Endpoints()

OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)


@routes.documented(
    Endpoint(
        "GET",
        "/openapi.json",
        "openapi",
        "This document",
        "operations",
        {200: ("The OpenAPI 3.1 document", ANY_OBJECT, JSON)},
    )
)
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this gateway (no API key needed)."""
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type=JSON)
