"""GET /: a landing page that links the console, the OpenAPI document and the probes."""

from __future__ import annotations

import re

from tests.support.stack import Stack


async def test_the_landing_page_links_what_a_person_can_open(stack: Stack) -> None:
    async with stack.http.get(stack.gateway_url + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
    links = re.findall(r'<a href="([^"]+)"', html)
    assert links == ["/console", "/openapi.json", "/healthz", "/readyz"]  # no dashboard served yet
    for link in links:
        async with stack.http.get(stack.gateway_url + link) as response:
            assert response.status == 200, link
