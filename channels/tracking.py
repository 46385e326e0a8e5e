"""Open and click tracking: signed tokens, link rewriting, and the open pixel.

A token is ``base64url(msgpack([version, kind, message_id, customer_id, url]) + tag)`` where
``tag`` is the first 16 bytes of HMAC-SHA256 over the payload. Everything the click handler
needs rides in the token (no lookup), and since only URLs we signed can come back out of
one, ``/t/{token}`` can never be used as an open redirect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html as html_lib
import re
from urllib.parse import urlsplit

import msgspec

TOKEN_VERSION = 1
TAG_BYTES = 16
CLICK_PATH = "/t/"
OPEN_PATH = "/t/o/"
MAX_URL_LENGTH = 2048

# http(s) links in plain text; trailing punctuation belongs to the sentence, not the URL.
_TEXT_LINK = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
# href="http…" / href='http…' on anchors and areas.
_HREF = re.compile(
    r"(<(?:a|area)\b[^>]*?\bhref\s*=\s*)([\"'])(https?://[^\"']+)\2",
    re.IGNORECASE,
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


class InvalidToken(ValueError):
    """A tracking token that is malformed or whose signature does not match."""


class TrackedLink(msgspec.Struct, frozen=True, array_like=True):
    """What a token carries: an open (no url) or a click on ``url``, for one message."""

    version: int
    kind: str  # "o" open, "c" click
    message_id: str
    customer_id: str
    url: str = ""


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(TrackedLink).decode


def is_trackable_url(url: str) -> bool:
    """Only absolute http(s) URLs with a host are signed or followed."""
    if len(url) > MAX_URL_LENGTH:
        return False
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


class LinkTracker:
    """Signs and verifies tracking tokens and rewrites a message's links to go through us."""

    def __init__(self, secret: str, public_url: str) -> None:
        if not secret:
            raise ValueError("tracking needs a secret")
        self._key = hashlib.sha256(b"threadline-tracking:" + secret.encode()).digest()
        self._base = public_url.rstrip("/")

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:TAG_BYTES]

    def token(self, link: TrackedLink) -> str:
        payload = _encode(link)
        return base64.urlsafe_b64encode(payload + self._tag(payload)).rstrip(b"=").decode()

    def verify(self, token: str) -> TrackedLink:
        """The link a token carries; raises InvalidToken when it was not signed by us."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidToken("token is not base64url") from None
        payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        if len(raw) <= TAG_BYTES or not hmac.compare_digest(tag, self._tag(payload)):
            raise InvalidToken("token signature does not match")
        try:
            link = _decode(payload)
        except msgspec.DecodeError:
            raise InvalidToken("token payload is malformed") from None
        if link.version != TOKEN_VERSION or link.kind not in ("o", "c"):
            raise InvalidToken("unknown token version or kind")
        if link.kind == "c" and not is_trackable_url(link.url):
            raise InvalidToken("token does not carry an http(s) URL")
        return link

    def click_url(self, url: str, message_id: str, customer_id: str) -> str:
        link = TrackedLink(TOKEN_VERSION, "c", message_id, customer_id, url)
        return f"{self._base}{CLICK_PATH}{self.token(link)}"

    def open_url(self, message_id: str, customer_id: str) -> str:
        link = TrackedLink(TOKEN_VERSION, "o", message_id, customer_id)
        return f"{self._base}{OPEN_PATH}{self.token(link)}.gif"

    def rewrite_text(self, text: str, message_id: str, customer_id: str) -> str:
        """Every http(s) link in plain text (SMS, WhatsApp, the email text part) made a tracked one."""

        def replace(match: re.Match[str]) -> str:
            url = match.group(0)
            stripped = url.rstrip(_TRAILING)
            tail = url[len(stripped) :]
            if not is_trackable_url(stripped):
                return url
            return self.click_url(stripped, message_id, customer_id) + tail

        return _TEXT_LINK.sub(replace, text)

    def rewrite_html(self, html: str, message_id: str, customer_id: str) -> str:
        """Anchor hrefs made tracked links, and the open pixel added before ``</body>``."""

        def replace(match: re.Match[str]) -> str:
            prefix, quote, escaped = match.groups()
            url = html_lib.unescape(escaped)  # hrefs carry &amp; for &: sign the real URL
            if not is_trackable_url(url):
                return match.group(0)
            tracked = self.click_url(url, message_id, customer_id)
            return f"{prefix}{quote}{html_lib.escape(tracked)}{quote}"

        rewritten = _HREF.sub(replace, html)
        pixel = (
            f'<img src="{html_lib.escape(self.open_url(message_id, customer_id))}" width="1" height="1" '
            'alt="" style="display:block;border:0;width:1px;height:1px;">'
        )
        ends = list(_BODY_END.finditer(rewritten))
        if ends:
            at = ends[-1].start()
            return rewritten[:at] + pixel + "\n" + rewritten[at:]
        return rewritten + pixel


# A 1x1 transparent GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
