"""The hosted preference page: a signed, expiring link where a customer picks channels per type."""

from __future__ import annotations

import msgspec
from aiohttp import web

from conversations.access import Scope
from conversations.codec import decode_preferences
from conversations.models import Channel
from conversations.preferences import Preferences, TypePreference
from conversations.tokens import Claims, sign
from gateway.endpoints import Endpoints
from gateway.errors import ApiError
from gateway.routes.customers import CUSTOMER_ID, resolve_customer_id, set_preferences
from gateway.routes.messages import json_response
from gateway.services import SERVICES, Services
from gateway.signed_links import link_claims

routes = Endpoints()

PURPOSE = "preferences"
CHANNEL_LABELS = {
    Channel.SMS: "SMS",
    Channel.WHATSAPP: "WhatsApp",
    Channel.RCS: "RCS",
    Channel.VOICE: "Phone call",
    Channel.EMAIL: "Email",
}
TYPE_LABELS = {
    "transactional": "Codes and alerts",
    "service": "Service updates",
    "marketing": "Offers and news",
    "rich_media": "Rich messages",
    "urgent": "Urgent notices",
}


class PreferenceLink(msgspec.Struct):
    url: str
    expires_at: float


@routes.api(
    "POST",
    "/v1/customers/{customer_id}/preference-link",
    "createPreferenceLink",
    "A signed, expiring link to the hosted preference page",
    "customers",
    Scope.SEND,
    (201, "The link", PreferenceLink),
    (404,),
    params=(CUSTOMER_ID,),
)
async def create_preference_link(request: web.Request) -> web.Response:
    """A link to send the customer; it expires after ``preference_link_ttl_seconds``."""
    services = request.app[SERVICES]
    customer_id = await resolve_customer_id(services, request.match_info["customer_id"])
    expires_at = services.clock() + services.config.preference_link_ttl_seconds
    token = sign(services.config.secret_key, PURPOSE, Claims(customer_id, expires_at))
    url = f"{services.config.public_url}/preferences/{token}"
    return json_response(PreferenceLink(url, expires_at), status=201)


async def _customer_from_token(services: Services, token: str) -> str:
    claims = link_claims(services, PURPOSE, token, "preference")
    return await resolve_customer_id(services, claims.subject)


async def _render(services: Services, customer_id: str, saved: bool) -> web.Response:
    blob = await services.redis.get(services.keys.preferences(customer_id))
    preferences = decode_preferences(blob) if blob else Preferences()
    html = services.pages.get_template("preferences.html.j2").render(
        channels=[c.value for c in CHANNEL_LABELS],
        channel_labels={c.value: label for c, label in CHANNEL_LABELS.items()},
        message_types=services.config.message_types,
        type_labels=TYPE_LABELS,
        opted_out={t: [c.value for c in p.opted_out] for t, p in preferences.by_type.items()},
        first={t: p.order[0].value for t, p in preferences.by_type.items() if p.order},
        saved=saved,
    )
    return web.Response(text=html, content_type="text/html")


@routes.page("GET", "/preferences/{token}")
async def show_preferences(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    customer_id = await _customer_from_token(services, request.match_info["token"])
    return await _render(services, customer_id, saved=False)


@routes.page("POST", "/preferences/{token}")
async def save_preferences(request: web.Request) -> web.Response:
    """The form post: allowed channels and a preferred first channel per message type."""
    services = request.app[SERVICES]
    customer_id = await _customer_from_token(services, request.match_info["token"])
    form = await request.post()
    all_channels = list(CHANNEL_LABELS)
    by_type: dict[str, TypePreference] = {}
    for message_type in services.config.message_types:
        allowed = {str(v) for v in form.getall(f"allow:{message_type}", [])}
        unknown = allowed - {c.value for c in all_channels}
        first = str(form.get(f"first:{message_type}", "") or "")
        if unknown or (first and first not in {c.value for c in all_channels}):
            raise ApiError(422, "validation_failed", "unknown channel", f"allow:{message_type}")
        opted_out = tuple(c for c in all_channels if c.value not in allowed)
        order = (Channel(first),) if first else ()
        if opted_out or order:
            by_type[message_type] = TypePreference(order=order, opted_out=opted_out)
    await set_preferences(services, customer_id, by_type, "preference_page")
    return await _render(services, customer_id, saved=True)
