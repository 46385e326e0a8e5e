"""The content of ``POST /v1/messages``, checked before it is accepted: a rendered template or
the given body.

The gateway renders (and so checks) every variant the message could go out as before the
OutboundRequest is written, so a missing variable is the caller's 422 (naming it) rather than a
failed send later; the shard renders each attempt again for its own channel from the template
kind and variables the request keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateError

from channels.templates import MissingVariable, RenderedContent, TemplateNotAvailable, TemplateRenderer
from conversations.models import Channel
from gateway.errors import ApiError

GENERIC_KIND = "generic"
MAX_TEXT_LENGTH = 1600  # Twilio's limit for one SMS body; WhatsApp/RCS text stays within it too
TEXT_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.RCS)
ROUTABLE_PHONE_CHANNELS = (Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.VOICE)


def compose(
    renderer: TemplateRenderer,
    channel: Channel,
    *,
    body: str | None,
    subject: str | None,
    template_kind: str | None,
    variables: Mapping[str, Any],
) -> RenderedContent:
    """The content for ``channel``; raises ApiError (422) naming the field at fault."""
    if template_kind is None:
        if subject is not None and channel is not Channel.EMAIL:
            raise ApiError(422, "validation_failed", "subject is only used by email", "subject")
        if channel is not Channel.EMAIL:
            content = RenderedContent(body=body or "")
        else:  # an email needs HTML and a subject around the text: the generic template gives both
            given = {"body": body or ""} | ({"subject": subject} if subject is not None else {})
            content = _render(renderer, GENERIC_KIND, channel, given, variables_field="")
        field = "body"
    else:
        if subject is not None:
            raise ApiError(
                422, "validation_failed", "subject goes with body; a template renders its own", "subject"
            )
        content = _render(renderer, template_kind, channel, variables, "template.variables")
        field = "template"
    if not content.body.strip():
        raise ApiError(422, "empty_content", f"the message for {channel.value} renders empty", field)
    if channel in TEXT_CHANNELS and len(content.body) > MAX_TEXT_LENGTH:
        raise ApiError(
            422,
            "body_too_long",
            f"{channel.value} text is {len(content.body)} characters; at most {MAX_TEXT_LENGTH}",
            field,
        )
    return content


def _render(
    renderer: TemplateRenderer,
    kind: str,
    channel: Channel,
    variables: Mapping[str, Any],
    variables_field: str,
) -> RenderedContent:
    try:
        return renderer.render(kind, channel, variables)
    except TemplateNotAvailable as exc:
        raise ApiError(422, "template_not_found", str(exc), "template.kind") from exc
    except MissingVariable as exc:
        field = f"{variables_field}.{exc.variable}" if variables_field else exc.variable
        raise ApiError(422, "template_variable_missing", str(exc), field) from exc
    except TemplateError as exc:  # e.g. the sandbox refused an operation on a variable
        raise ApiError(422, "template_error", f"template {kind!r} failed: {exc}", "template") from exc


def check_variants(
    renderer: TemplateRenderer, kind: str, variables: Mapping[str, Any], channels: tuple[Channel, ...]
) -> None:
    """Every variant ``kind`` has for ``channels`` renders with ``variables`` (422 naming the field)."""
    for channel in channels:
        try:
            renderer.render(kind, channel, variables)
        except TemplateNotAvailable:
            continue  # no variant for this channel: the attempt sends the checked rendering
        except MissingVariable as exc:
            field = f"template.variables.{exc.variable}"
            raise ApiError(422, "template_variable_missing", f"{exc} ({channel.value})", field) from exc
        except TemplateError as exc:
            raise ApiError(422, "template_error", f"template {kind!r} failed: {exc}", "template") from exc
