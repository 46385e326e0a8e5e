"""The one-step opt-out each non-transactional attempt carries (pure: no I/O).

An email gets a signed one-click ``List-Unsubscribe`` URL (RFC 8058): the token names the
customer and the message, so the page needs no lookup and cannot be pointed at anyone else.
A notification call gets the action URL of its opt-out key (Twilio signs what it posts there;
our ids ride in the query like a status callback's). The gateway says where each is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from conversations.models import Channel
from conversations.preferences import CONSENT_EXEMPT_TYPES
from conversations.tokens import Claims, sign

UNSUBSCRIBE_PURPOSE = "unsubscribe"
UNSUBSCRIBE_LINK_TTL_SECONDS = 365 * 24 * 3600  # mail is read (and acted on) long after it is sent


class OptOutLinks:
    """Builds each attempt's opt-out URL from the base URLs the gateway serves."""

    def __init__(self, secret: str, bases: Mapping[Channel, str]) -> None:
        self._secret = secret
        self._bases = dict(bases)

    def for_attempt(
        self, channel: Channel, message_type: str, message_id: str, customer_id: str, now: float
    ) -> str:
        """The URL, or "" where the channel has none or the type is exempt from consent."""
        base = self._bases.get(channel, "")
        if not base or message_type in CONSENT_EXEMPT_TYPES:
            return ""
        if channel is Channel.EMAIL:
            if not self._secret:
                return ""
            claims = Claims(customer_id, now + UNSUBSCRIBE_LINK_TTL_SECONDS, {"mid": message_id})
            return f"{base}/{sign(self._secret, UNSUBSCRIBE_PURPOSE, claims)}"
        return f"{base}?{urlencode({'mid': message_id, 'cid': customer_id})}"
