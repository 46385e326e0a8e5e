"""Message templates of journey steps: Jinja2 in a sandbox, missing variables render empty."""

from __future__ import annotations

from typing import Any

import jinja2

from conversations.bounded_templates import BoundedSandbox, render_bounded


class TemplateProblem(ValueError):
    """A template that does not compile (or fails to render)."""


class Templates:
    """Compiles each distinct template source once; rendering has no side effects."""

    def __init__(self) -> None:
        # Journey files are written by operators, not customers, but a sandbox still keeps a
        # template from reaching Python internals or exhausting the shard's memory and CPU
        # (the bounded sandbox checks operators, loops and output size); ChainableUndefined lets `event.cart.url`
        # render empty when the event lacks a cart instead of failing the whole step.
        self._env = BoundedSandbox(undefined=jinja2.ChainableUndefined, autoescape=False)
        self._compiled: dict[str, jinja2.Template] = {}

    def compile(self, source: str) -> jinja2.Template:
        """The compiled template for ``source``; TemplateProblem names the syntax error."""
        found = self._compiled.get(source)
        if found is None:
            try:
                found = self._env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateProblem(f"template error: {exc.message} (line {exc.lineno})") from exc
            self._compiled[source] = found
        return found

    def render(self, source: str, context: dict[str, Any]) -> str:
        """Render ``source``; a runtime error becomes TemplateProblem."""
        try:
            return render_bounded(self.compile(source), context)
        except TemplateProblem:
            raise
        except Exception as exc:  # sandbox violations, filters on wrong types, …
            raise TemplateProblem(f"template error: {exc}") from exc
