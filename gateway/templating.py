"""The jinja2 environment for pages the gateway serves (autoescaped HTML)."""

from __future__ import annotations

import jinja2


def page_environment() -> jinja2.Environment:
    """Templates from ``gateway/templates``; undefined variables are errors, HTML is escaped."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gateway", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        enable_async=False,
    )
