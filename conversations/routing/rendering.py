"""What one attempt renders from: the message as asked, before any channel shaped it."""

from __future__ import annotations

from typing import Any

import msgspec

from conversations.models import Identifier, RichCard


class AttemptContent(msgspec.Struct, frozen=True, kw_only=True):
    """A message's content for one attempt; the channel's renderer turns it into what is sent.

    ``template_kind`` + ``variables`` render for the attempt's own channel (falling back to
    ``body``, the rendering the API checked, when the kind has no variant for that channel); a
    rich card is adapted to text (title, description, link) on a channel that cannot show it.
    """

    message_id: str  # the attempt's id (tracked links name it)
    recipient: Identifier
    message_type: str
    body: str
    requested_at: float
    country: str = ""  # the destination country routing priced the decision for
    subject: str = ""
    html: str = ""
    template_kind: str = ""
    variables: dict[str, Any] = msgspec.field(default_factory=dict)
    rich_card: RichCard | None = None
    adapt: bool = False
    track: bool = False
