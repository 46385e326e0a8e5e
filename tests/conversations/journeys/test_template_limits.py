"""Journey templates and files cannot exhaust a shard's memory or CPU: operators, calls, loops and
output are bounded in the sandbox, and YAML aliases (a "billion laughs") are refused on load."""

from __future__ import annotations

import time

import pytest

from conversations.journeys.definition import DefinitionError, load_source
from conversations.journeys.templates import TemplateProblem, Templates
from tests.support.stack import Stack

COSTLY = {
    "string product": "{{ 'a' * 10**8 }}",
    "list product": "{{ ([0] * 10**7) | length }}",
    "integer power": "{{ (2 ** (10**7)) % 7 }}",
    "integer product": "{{ (2 ** 4000 * 2 ** 4000) % 7 }}",
    "printf width": "{{ '%100000000d' % 1 }}",
    "format width": "{{ '{:>100000000}'.format(1) }}",
    "format filter": "{{ '%100000000s' | format('x') }}",
    "center filter": "{{ 'x' | center(10**8) }}",
    "padding method": "{{ 'x'.ljust(10**8) }}",
    "replace": "{{ ('a' * 10000).replace('', 'b' * 10000) }}",
    "join": "{{ range(10000) | join('-' * 10000) }}",
    "nested loops": "{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}",
    "long output": "{% for i in range(100000) %}{{ 'abcdefghij' }}{% endfor %}",
    "recursive macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(22) }}",
}


@pytest.mark.parametrize("source", COSTLY.values(), ids=COSTLY.keys())
def test_costly_templates_are_refused_quickly(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateProblem, match="refused"):
        Templates().render(source, {})
    assert time.monotonic() - started < 5


def test_ordinary_templates_still_render() -> None:
    source = (
        "{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ '%05.1f' % 3.14159 }} {{ '{:>4}'.format(7) }} "
        "{{ [1, 2] | join(',') }} {{ ', '.join(['a', 'b']) }} {{ 'x' | center(5) }}|"
        "{% for i in range(3) %}{{ i }}{% endfor %} {{ customer.name or 'there' }}"
    )
    assert Templates().render(source, {"customer": {}}) == "ababab 1024 003.1    7 1,2 a, b   x  |012 there"


BOMB = """
name: bomb
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
"""


def test_yaml_aliases_are_refused() -> None:
    with pytest.raises(DefinitionError, match="aliases"):
        load_source(BOMB)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_deep_nesting_is_a_definition_error(fmt: str) -> None:
    with pytest.raises(DefinitionError, match="nested too deeply"):
        load_source("[" * 50_000 + "]" * 50_000, fmt)


async def test_the_api_refuses_an_alias_bomb_and_deep_json(stack: Stack) -> None:
    yaml = {"Content-Type": "application/yaml"}
    status, body = await stack.api("PUT", "/v1/journeys/bomb", data=BOMB.encode(), headers=yaml)
    assert status == 400 and "aliases" in body["error"]["message"], body
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = await stack.api("PUT", "/v1/journeys/bomb", data=deep)
    assert status == 400 and body["error"]["code"] == "invalid_json", body
