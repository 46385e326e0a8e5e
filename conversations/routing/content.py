"""Content as each channel can carry it: the hook where rich content is adapted per channel."""

from __future__ import annotations

import msgspec

from conversations.models import Channel, Media


class Content(msgspec.Struct, frozen=True):
    """What a message says, before a channel's adapter renders it."""

    body: str
    media: tuple[Media, ...] = ()
    template: str = ""


def adapt_for(channel: Channel, content: Content) -> Content:
    """``content`` re-rendered for ``channel`` when a fallback step moves it there.

    For now every channel gets the same body; turning an RCS rich card into SMS text plus a
    link within segment limits belongs to the RCS adapter and plugs in here.
    """
    return content
