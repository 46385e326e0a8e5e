"""The middleware that applies the rate limits (``gateway/rate_limit.py``) to each request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.auth import bearer_token
from gateway.rate_limit import client_address
from gateway.services import SERVICES


@web.middleware
async def rate_limit_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Limit every ``/v1`` request of a known key (one token; a batch charges its other items
    itself; unknown keys fall through to the handler's 401), and every request to a public
    route per client address. Provider webhooks are signed
    and come in bursts from a few addresses: they are not limited here."""
    services = request.app[SERVICES]
    if request.path.startswith("/v1/"):
        token = bearer_token(request)
        grant = services.api_keys.identify(token) if token else None
        if grant is not None:
            await services.rate_limiter.check(grant)
    elif not request.path.startswith("/webhooks/"):
        trusted = services.trusted_proxies
        address = client_address(request.remote, request.headers.get("X-Forwarded-For", ""), trusted)
        await services.rate_limiter.check_address(address)
    return await handler(request)
