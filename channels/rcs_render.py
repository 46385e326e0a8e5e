"""The RCS adapter's renderer: our message as an RBM AgentMessage, or adapted to SMS text.

When a phone cannot get RCS, the same message goes out by SMS; what it becomes (card title +
description + link, within a segment limit) is decided here, not by the outbox or the router.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol

import msgspec

from conversations.models import OutboxJob, RichCard
from conversations.sms_segments import segment_count

ELLIPSIS = "..."  # ASCII on purpose: "…" is not GSM-7 and would turn the whole SMS into UCS-2

# Our message ids are not UUIDs; RBM wants one. uuid5 of our id is stable, so a retried send
# carries the same RBM messageId and RBM ignores the duplicate.
_MESSAGE_ID_NAMESPACE = uuid.UUID("0b8e3c52-6f7a-5d2e-9a41-7c1f2d3e4b5a")


# --- sending: the AgentMessage wire format ----------------------------------------------


class _OpenUrl(msgspec.Struct):
    url: str


class _Reply(msgspec.Struct, rename="camel"):
    text: str
    postback_data: str


class _Action(msgspec.Struct, rename="camel"):
    text: str
    postback_data: str
    open_url_action: _OpenUrl


class _Suggestion(msgspec.Struct, omit_defaults=True):
    reply: _Reply | None = None
    action: _Action | None = None


class _ContentInfo(msgspec.Struct, rename="camel"):
    file_url: str
    force_refresh: bool = False


class _Media(msgspec.Struct, rename="camel"):
    height: str
    content_info: _ContentInfo


class _CardContent(msgspec.Struct, omit_defaults=True):
    title: str = ""
    description: str = ""
    media: _Media | None = None
    suggestions: list[_Suggestion] = msgspec.field(default_factory=list)


class _StandaloneCard(msgspec.Struct, rename="camel"):
    card_orientation: str
    card_content: _CardContent


class _RichCard(msgspec.Struct, rename="camel"):
    standalone_card: _StandaloneCard


class _ContentMessage(msgspec.Struct, rename="camel", omit_defaults=True):
    text: str | None = None
    rich_card: _RichCard | None = None


class AgentMessage(msgspec.Struct, rename="camel"):
    """The body of ``POST /v1/phones/{E.164}/agentMessages``."""

    content_message: _ContentMessage


def rbm_message_id(message_id: str) -> str:
    """The UUID we send as RBM's ``messageId`` for our message (stable across retries)."""
    return str(uuid.uuid5(_MESSAGE_ID_NAMESPACE, message_id))


def render_agent_message(job: OutboxJob) -> AgentMessage:
    """Text, or a standalone rich card (its description defaults to the message body)."""
    card = job.rich_card
    if card is None:
        return AgentMessage(_ContentMessage(text=job.body))
    suggestions = [
        _Suggestion(action=_Action(s.text, s.postback_data or s.text, _OpenUrl(s.url)))
        if s.url
        else _Suggestion(reply=_Reply(s.text, s.postback_data or s.text))
        for s in card.suggestions
    ]
    media = _Media("MEDIUM", _ContentInfo(card.media_url)) if card.media_url else None
    content = _CardContent(card.title, card.description or job.body, media, suggestions)
    return AgentMessage(_ContentMessage(rich_card=_RichCard(_StandaloneCard("VERTICAL", content))))


# --- the SMS adaptation ------------------------------------------------------------------


def card_link(card: RichCard) -> str:
    """The one link an SMS can carry: the first open-URL suggestion, else the card's media."""
    return next((s.url for s in card.suggestions if s.url), "") or card.media_url


def _join(*parts: str) -> str:
    return "\n".join(part for part in parts if part)


def _cut(text: str, length: int) -> str:
    """``text`` cut to ``length`` characters with "..." (empty when nothing is left)."""
    cut = text[:length].rstrip().rstrip(",.;:-").rstrip()
    return cut + ELLIPSIS if cut else ""


def _shorten(text: str, fits: Callable[[str], bool]) -> str:
    """The longest cut of ``text`` (at a word if one is near, with "...") for which ``fits`` holds.

    Every candidate is built by ``_cut`` and the one returned was itself checked: a result that
    differs from what was measured (say, by a trailing character one strip removes and the
    other keeps) could exceed the limit.
    """
    if fits(text):
        return text
    low, high = 0, len(text)  # fits(_cut(low)) holds, fits(_cut(high)) does not
    while high - low > 1:
        middle = (low + high) // 2
        if fits(_cut(text, middle)):
            low = middle
        else:
            high = middle
    space = text.rfind(" ", 0, low)
    if space > 0 and space >= low - 20:  # prefer a word boundary if one is near
        at_word = _cut(text, space)
        if at_word and fits(at_word):
            return at_word
    best = _cut(text, low)
    return best if best and fits(best) else ""


class CardContent(Protocol):
    """What a card adaptation reads: the card, and the text it stands beside."""

    @property
    def rich_card(self) -> RichCard | None: ...

    @property
    def body(self) -> str: ...


def render_sms(job: CardContent, max_segments: int) -> str:
    """The message as SMS text: a card becomes title + description + link within ``max_segments``.

    The link is never cut (a cut link is useless); the description is shortened first, then
    the title. Plain text goes as it is (the API already caps it at Twilio's 1600 characters).
    """
    card = job.rich_card
    if card is None:
        return job.body
    title, description, link = card.title.strip(), (card.description or job.body).strip(), card_link(card)

    def fits(text: str) -> bool:
        return segment_count(text) <= max_segments

    full = _join(title, description, link)
    if fits(full):
        return full
    short_description = _shorten(description, lambda d: fits(_join(title, d, link)))
    if short_description:
        return _join(title, short_description, link)
    return _join(_shorten(title, lambda t: fits(_join(t, link))), link)
