"""``GET /``: a small page that says what this server is and links what a person can open."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.endpoints import Endpoints
from gateway.services import SERVICES

routes = Endpoints()

LANDING_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


@dataclass(frozen=True, slots=True)
class Link:
    """One entry of the landing page."""

    path: str
    title: str
    what: str


LINKS = (
    Link(
        "/console",
        "Agent console",
        "support agents work each customer's one thread (sign in with an agent token)",
    ),
    Link("/dashboard", "Dashboard", "live figures per channel"),
    Link("/openapi.json", "OpenAPI document", "every /v1 route and webhook; /v1 routes need an API key"),
    Link("/healthz", "Liveness", "the process is up"),
    Link("/readyz", "Readiness", "Redis and every shard actor answer"),
)


def served_links(app: web.Application) -> list[Link]:
    """The links whose route this app serves (the dashboard only once there is one)."""
    served = {resource.canonical for resource in app.router.resources()}
    return [link for link in LINKS if link.path in served]


@routes.page("GET", "/")
async def landing(request: web.Request) -> web.Response:
    """What this server is, with links to the console, the API document and the probes."""
    template = request.app[SERVICES].pages.get_template("landing.html.j2")
    html = template.render(links=served_links(request.app))
    return web.Response(
        text=html,
        content_type="text/html",
        headers={"Content-Security-Policy": LANDING_CSP, "X-Content-Type-Options": "nosniff"},
    )
