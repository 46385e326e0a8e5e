"""Open and click tracking: ``GET /t/o/{token}.gif`` (pixel) and ``GET /t/{token}`` (302 to the link).

The event goes to the customer's shard as an ingest entry, like everything else; a token we
did not sign is a 403, and the redirect target only ever comes from inside a signed token.
"""

from __future__ import annotations

import logging

from aiohttp import web
from redis.exceptions import RedisError

from channels.tracking import PIXEL_GIF, InvalidToken, LinkTracker, TrackedLink
from conversations.codec import encode
from conversations.models import Engagement, EngagementKind
from conversations.sharding import shard_for_customer
from gateway.endpoints import Endpoints
from gateway.errors import ApiError
from gateway.services import SERVICES, Services

log = logging.getLogger(__name__)

routes = Endpoints()

# A message's clicks count once per window: a link anyone may replay cannot grow the thread
# (Redis runs without eviction) faster than one entry per message per window.
CLICK_WINDOW_SECONDS = 300
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


def _verified(services: Services, token: str, kind: str) -> tuple[TrackedLink, int]:
    secret = services.config.tracking_key
    if not secret:
        raise ApiError(404, "tracking_disabled", "link tracking is not configured")
    try:
        link = LinkTracker(secret, services.config.public_url).verify(token)
    except InvalidToken as exc:
        raise ApiError(403, "invalid_token", str(exc)) from exc
    shard = shard_for_customer(link.customer_id, services.slot_map)
    if link.kind != kind or shard is None:
        raise ApiError(403, "invalid_token", "token is not valid for this link")
    return link, shard


async def _record(services: Services, shard: int, entry: Engagement, dedupe_key: str | None) -> None:
    # The customer is waiting on the redirect: losing one engagement beats showing an error.
    try:
        await services.ingest.submit(shard, encode(entry), dedupe_key)
    except (RedisError, OSError) as exc:
        log.warning("could not record %s of %s: %s", entry.kind, entry.message_id, exc)


@routes.page("GET", "/t/o/{token}.gif")
async def track_open(request: web.Request) -> web.Response:
    """The open pixel of an email: recorded once per message, answered with a 1x1 GIF."""
    services = request.app[SERVICES]
    link, shard = _verified(services, request.match_info["token"], "o")
    entry = Engagement(link.message_id, link.customer_id, EngagementKind.OPENED, services.clock())
    await _record(services, shard, entry, f"open:{link.message_id}")
    return web.Response(body=PIXEL_GIF, content_type="image/gif", headers=NO_STORE)


@routes.page("GET", "/t/{token}")
async def track_click(request: web.Request) -> web.Response:
    """A tracked link: record the click (once per message and window), then 302 to the signed URL."""
    services = request.app[SERVICES]
    link, shard = _verified(services, request.match_info["token"], "c")
    now = services.clock()
    entry = Engagement(link.message_id, link.customer_id, EngagementKind.CLICKED, now, link.url)
    await _record(services, shard, entry, f"click:{link.message_id}:{int(now // CLICK_WINDOW_SECONDS)}")
    raise web.HTTPFound(link.url, headers=NO_STORE)
