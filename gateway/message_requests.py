"""The body of ``POST /v1/messages`` and the checks msgspec cannot express (each names its field)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from conversations.config import Config
from conversations.models import Channel, Identifier, RichCard, Suggestion, TemplateRef
from conversations.normalize import InvalidIdentifier, email_identifier, phone_identifier
from gateway.errors import ApiError

MessageType = Literal["transactional", "service", "marketing", "rich_media", "urgent"]
HttpUrl = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^https?://")]
PHONE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.VOICE})
VOICE_TYPES = frozenset({"urgent", "transactional"})  # a phone call is too intrusive for the rest


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    """Who to send to, by exactly one of their identifiers."""

    phone: str | None = None
    email: str | None = None


class SuggestionIn(msgspec.Struct, forbid_unknown_fields=True):
    """A chip on an RCS card: a reply, or with ``url`` an open-URL action (RBM limits)."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=25)]
    postback_data: Annotated[str, msgspec.Meta(max_length=2048)] = ""
    url: HttpUrl = ""


class RichCardIn(msgspec.Struct, forbid_unknown_fields=True):
    """An RCS standalone card; adapted to SMS (title, description, link) when RCS is not possible."""

    title: Annotated[str, msgspec.Meta(max_length=200)] = ""
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    media_url: HttpUrl = ""
    suggestions: Annotated[list[SuggestionIn], msgspec.Meta(max_length=4)] = msgspec.field(
        default_factory=list
    )

    def to_domain(self) -> RichCard:
        suggestions = tuple(Suggestion(s.text, s.postback_data, s.url) for s in self.suggestions)
        return RichCard(self.title, self.description, self.media_url, suggestions)


class WhatsAppTemplateIn(msgspec.Struct, forbid_unknown_fields=True):
    """An approved WhatsApp template to send, with its body variables in order."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    language: Annotated[str, msgspec.Meta(min_length=2, max_length=15)] = "en_US"
    variables: list[Annotated[str, msgspec.Meta(max_length=1024)]] = msgspec.field(default_factory=list)

    def to_domain(self) -> TemplateRef:
        return TemplateRef(self.name, self.language, tuple(self.variables))


class ContentTemplate(msgspec.Struct, forbid_unknown_fields=True):
    """A message kind rendered from ``channels/templates`` with the given variables."""

    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    variables: dict[str, Any] = msgspec.field(default_factory=dict)


class SendMessage(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/messages``: exactly one of ``body`` and ``template`` (a message kind),
    except that a WhatsApp ``whatsapp_template`` may stand alone."""

    to: Recipient
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)] | None = None
    template: ContentTemplate | None = None
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=998)] | None = None  # email with body
    type: MessageType = "service"
    channel: Channel | None = None
    rich_card: RichCardIn | None = None
    whatsapp_template: WhatsAppTemplateIn | None = None
    track: bool | None = None  # None: the config's tracking.channels decide


def recipient_and_channel(command: SendMessage, config: Config) -> tuple[Identifier, Channel]:
    """The recipient's identifier and the channel to render for; 422 naming the field when they don't fit."""
    to = command.to
    if (to.phone is None) == (to.email is None):
        raise ApiError(422, "validation_failed", "give exactly one of to.phone and to.email", "to")
    if to.email is not None:
        if command.channel not in (None, Channel.EMAIL):
            raise ApiError(422, "channel_unavailable", f"channel {command.channel} needs to.phone", "channel")
        if not config.email.smtp_url:
            raise ApiError(422, "channel_unavailable", "email is not configured (email.smtp_url)", "channel")
        try:
            return email_identifier(to.email), Channel.EMAIL
        except InvalidIdentifier as exc:
            raise ApiError(422, "invalid_identifier", str(exc), "to.email") from exc
    assert to.phone is not None
    channel = command.channel or Channel.SMS
    if channel not in PHONE_CHANNELS:
        raise ApiError(422, "channel_unavailable", f"channel {channel} needs to.email", "channel")
    try:
        return phone_identifier(to.phone), channel
    except InvalidIdentifier as exc:
        raise ApiError(422, "invalid_identifier", str(exc), "to.phone") from exc


def check_channel_content(command: SendMessage, channel: Channel) -> None:
    """Refuse what the chosen channel cannot carry, naming the field."""
    standalone_template = (
        command.whatsapp_template is not None and command.body is None and command.template is None
    )
    if not standalone_template and (command.body is None) == (command.template is None):
        raise ApiError(422, "validation_failed", "give exactly one of body and template", "body")
    if command.whatsapp_template is not None and channel is not Channel.WHATSAPP:
        raise ApiError(
            422, "validation_failed", "whatsapp_template needs channel whatsapp", "whatsapp_template"
        )
    if command.rich_card is not None:
        if channel is not Channel.RCS:
            raise ApiError(422, "rich_card_unsupported", "rich_card needs channel rcs", "rich_card")
        card = command.rich_card
        if not (card.title or card.description or card.media_url):
            raise ApiError(
                422, "validation_failed", "a rich card needs a title, description or media_url", "rich_card"
            )
    if channel is Channel.VOICE and command.type not in VOICE_TYPES:
        raise ApiError(
            422, "channel_unavailable", "voice calls are only for urgent or transactional messages", "type"
        )


def describe_template(template: TemplateRef) -> str:
    """What the thread shows for a WhatsApp template sent without a body of our own."""
    variables = f": {', '.join(template.variables)}" if template.variables else ""
    return f"[template {template.name} ({template.language}){variables}]"
