"""Reading a published definition (a journey, a segment) from a PUT: JSON, or YAML by content type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.errors import ApiError

Loader = Callable[[str, str], dict[str, Any]]  # (text, "json" | "yaml") -> the source


async def definition_source(
    request: web.Request, what: str, max_bytes: int, load: Loader, load_error: type[Exception]
) -> dict[str, Any]:
    """The definition's source, named as the URL names it: 400 for an empty or unreadable body
    (the loader's error, with its own code when it has one), 413 past ``max_bytes``, 422 when the
    body names another ``name``."""
    name = request.match_info["name"]
    body = await request.read()
    if not body:
        raise ApiError(400, "empty_body", f"request body is empty; a {what} definition expected")
    if len(body) > max_bytes:
        raise ApiError(413, "payload_too_large", f"a {what} definition is at most {max_bytes} bytes")
    fmt = "yaml" if "yaml" in request.content_type else "json"
    try:
        source = load(body.decode("utf-8", "replace"), fmt)
    except load_error as exc:
        code = getattr(exc, "code", "") or f"invalid_{fmt}"
        raise ApiError(400, code, getattr(exc, "message", str(exc))) from exc
    source.setdefault("name", name)
    if source["name"] != name:
        raise ApiError(
            422, "validation_failed", f"name {source['name']!r} differs from the URL's {name!r}", "name"
        )
    return source
