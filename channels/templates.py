"""Message templates: one jinja2 file per message kind and channel variant, rendered in a sandbox.

Files live in ``channels/templates/`` as ``{kind}.{variant}.j2``; variants are ``sms``,
``whatsapp``, ``rcs``, ``voice`` and, for email, ``email.subject``, ``email.txt`` and
``email.html``. WhatsApp and RCS fall back to the SMS text when a kind has no variant of
their own. A variable the template needs but the caller did not give is an error naming it
(StrictUndefined): a customer never receives an empty gap. Only HTML is autoescaped. The
sandbox is bounded (``conversations/bounded_templates.py``): no variable makes a huge message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from jinja2 import PackageLoader, StrictUndefined, TemplateError, TemplateNotFound, UndefinedError
from jinja2.sandbox import SecurityError
from jinja2.utils import missing

from conversations.bounded_templates import BoundedSandbox, render_bounded
from conversations.models import Channel

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# Which template variants a channel tries, in order.
TEXT_VARIANTS: dict[Channel, tuple[str, ...]] = {
    Channel.SMS: ("sms",),
    Channel.WHATSAPP: ("whatsapp", "sms"),
    Channel.RCS: ("rcs", "sms"),
    Channel.VOICE: ("voice",),
}


class RenderedContent(msgspec.Struct, frozen=True):
    """A message rendered for one channel: text body, plus subject and HTML for email."""

    body: str
    subject: str = ""
    html: str = ""


class TemplateNotAvailable(LookupError):
    """No template for this kind (or none of its variants suits the channel)."""


class MissingVariable(TemplateError):
    """A template used a variable the caller did not supply; ``variable`` is its dotted path."""

    def __init__(self, variable: str, template: str) -> None:
        super().__init__(f"template {template} needs the variable {variable!r}, which was not given")
        self.variable = variable
        self.template = template


class RenderFailed(TemplateError):
    """A template failed on variables of the wrong type or shape."""


class _Path(dict):
    """A variables mapping that knows where it sits, so a missing key is named in full."""

    __slots__ = ("_tl_path",)  # underscore: unreachable from sandboxed templates
    _tl_path: str


def _with_paths(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        wrapped = _Path({k: _with_paths(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()})
        wrapped._tl_path = path
        return wrapped
    if isinstance(value, list | tuple):
        return [_with_paths(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


class _UnknownVariable(UndefinedError):
    """Raised inside rendering; its message is the missing variable's dotted path."""


class _NamedUndefined(StrictUndefined):
    """StrictUndefined whose error names the missing variable by its full dotted path."""

    __slots__ = ()

    def __init__(
        self, hint: str | None = None, obj: Any = missing, name: str | None = None, exc: Any = UndefinedError
    ) -> None:
        # Other exceptions (the sandbox's SecurityError) keep their own type and message.
        super().__init__(hint, obj, name, _UnknownVariable if exc is UndefinedError else exc)

    @property
    def _undefined_message(self) -> str:
        if self._undefined_exception is not _UnknownVariable or self._undefined_name is None:
            return super()._undefined_message
        name = str(self._undefined_name)
        parent = (
            getattr(self._undefined_obj, "_tl_path", "") if isinstance(self._undefined_obj, _Path) else ""
        )
        return f"{parent}.{name}" if parent else name


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith(".html.j2")


class TemplateRenderer:
    """Renders message kinds per channel from the package's template files."""

    def __init__(self, package: str = "channels", folder: str = "templates") -> None:
        self._env = BoundedSandbox(
            loader=PackageLoader(package, folder),
            undefined=_NamedUndefined,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def kinds(self) -> list[str]:
        """Every message kind that has at least one template."""
        names = self._env.list_templates(extensions=["j2"])
        return sorted({name.split(".", 1)[0] for name in names if not name.startswith("_")})

    def render(self, kind: str, channel: Channel, variables: Mapping[str, Any]) -> RenderedContent:
        """Render ``kind`` for ``channel``; raises TemplateNotAvailable or MissingVariable."""
        if not KIND_PATTERN.match(kind):
            raise TemplateNotAvailable(f"not a template kind: {kind!r}")
        values = _with_paths(dict(variables), "")
        if channel is Channel.EMAIL:
            return RenderedContent(
                subject=" ".join(self._render(kind, "email.subject", values).split()),
                body=self._render(kind, "email.txt", values),
                html=self._render(kind, "email.html", values),
            )
        for variant in TEXT_VARIANTS.get(channel, ()):
            try:
                return RenderedContent(body=self._render(kind, variant, values))
            except TemplateNotFound:
                continue
        raise TemplateNotAvailable(f"template {kind!r} has no {channel.value} variant")

    def _render(self, kind: str, variant: str, values: Mapping[str, Any]) -> str:
        name = f"{kind}.{variant}.j2"
        try:
            template = self._env.get_template(name)
        except TemplateNotFound:
            if variant.startswith("email"):
                raise TemplateNotAvailable(f"template {kind!r} has no {variant} variant") from None
            raise
        try:
            return render_bounded(template, values).strip()
        except _UnknownVariable as exc:
            raise MissingVariable(str(exc), name) from None
        except (TypeError, ValueError, ArithmeticError, LookupError, SecurityError) as exc:
            # A variable of the wrong shape (e.g. a number where text is joined), or one that would
            # make a huge message (the bounded sandbox refused it): the caller's fault.
            raise RenderFailed(f"template {name} could not use the variables given: {exc}") from exc
