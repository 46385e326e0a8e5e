"""One-click email unsubscribe (RFC 8058): ``POST /unsubscribe/{token}`` opts the address out.

Mail clients POST ``List-Unsubscribe=One-Click`` to the URL of an email's ``List-Unsubscribe``
header; a person who follows the link gets a page whose button posts the same. A GET never
unsubscribes (mail scanners prefetch links). The opt-out is an ``ConsentRequest`` on the
customer's home shard, durable before the page answers; the shard audits it with its source.
"""

from __future__ import annotations

from aiohttp import web

from conversations.codec import encode
from conversations.models import Channel, ConsentRequest
from conversations.opt_out_links import UNSUBSCRIBE_PURPOSE
from conversations.sharding import shard_for_customer
from gateway.endpoints import Endpoints
from gateway.errors import ApiError
from gateway.routes.webhooks import UNSUBSCRIBE_PATH
from gateway.services import SERVICES, Services
from gateway.signed_links import link_claims

routes = Endpoints()

SOURCE = "email_list_unsubscribe"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _verified(services: Services, token: str) -> tuple[str, str, int]:
    """The customer, the message and the home shard a genuine token names."""
    claims = link_claims(services, UNSUBSCRIBE_PURPOSE, token, "unsubscribe")
    shard = shard_for_customer(claims.subject, services.slot_map)
    if shard is None:
        raise ApiError(403, "link_invalid", "this unsubscribe link is not valid")
    return claims.subject, claims.extra.get("mid", ""), shard


def _page(services: Services, done: bool) -> web.Response:
    html = services.pages.get_template("unsubscribe.html.j2").render(done=done)
    return web.Response(text=html, content_type="text/html", headers=NO_STORE)


@routes.page("GET", UNSUBSCRIBE_PATH + "/{token}")
async def show_unsubscribe(request: web.Request) -> web.Response:
    """The page a person reaches from the link: one button (nothing changes on a GET)."""
    services = request.app[SERVICES]
    _verified(services, request.match_info["token"])
    return _page(services, done=False)


@routes.page("POST", UNSUBSCRIBE_PATH + "/{token}")
async def unsubscribe(request: web.Request) -> web.Response:
    """Opt the address out of non-transactional email at once (once per message and link)."""
    services = request.app[SERVICES]
    customer_id, message_id, shard = _verified(services, request.match_info["token"])
    entry = ConsentRequest(customer_id, Channel.EMAIL, SOURCE, services.clock(), None, message_id)
    # The same link posted twice (client and person, or a retry) is one opt-out.
    dedupe = f"unsubscribe:{customer_id}:{message_id}"
    await services.ingest.submit(shard, encode(entry), dedupe)
    return _page(services, done=True)
