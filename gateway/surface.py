"""Every route the gateway serves: the tables the app factory mounts and the OpenAPI document describes."""

from __future__ import annotations

from gateway.endpoints import Endpoint, Endpoints
from gateway.routes import (
    console,
    customers,
    docs,
    events,
    health,
    journeys,
    landing,
    messages,
    preference_page,
    segments,
    tracking,
    unsubscribe,
)
from gateway.routes.webhooks import WEBHOOKS

ROUTE_TABLES: tuple[Endpoints, ...] = (
    health.routes,
    tracking.routes,
    messages.routes,
    customers.routes,
    preference_page.routes,
    unsubscribe.routes,
    console.routes,
    events.routes,
    journeys.routes,
    segments.routes,
    docs.routes,
    landing.routes,
)


def declared_endpoints() -> tuple[Endpoint, ...]:
    """Every documented route: the API's, the probes', and each provider webhook's."""
    webhooks = tuple(endpoint for webhook in WEBHOOKS for endpoint in webhook.endpoints)
    return tuple(endpoint for table in ROUTE_TABLES for endpoint in table.endpoints) + webhooks
