"""Inbound email as SendGrid Inbound Parse posts it (multipart/form-data), parsed into an InboundMessage.

The form carries ``from``, ``to``, ``subject``, ``text``, ``html``, ``headers`` (the raw
header block), ``envelope`` (JSON: SMTP ``to`` list and ``from``), ``charsets`` (JSON: the
charset of each text field), ``attachments`` (a count) and the files themselves. The sender
is the EMAIL identifier of the ``From`` header; duplicates are recognised by Message-ID.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from email.header import decode_header, make_header
from email.parser import HeaderParser
from email.utils import parseaddr
from html.parser import HTMLParser

from channels.base import InvalidPayload
from conversations.models import Channel, InboundMessage
from conversations.normalize import InvalidIdentifier, email_identifier

PROVIDER = "sendgrid"
TEXT_FIELDS = (
    "from",
    "to",
    "cc",
    "subject",
    "text",
    "html",
    "headers",
    "envelope",
    "charsets",
    "attachments",
)


def decode_fields(raw: Mapping[str, bytes]) -> dict[str, str]:
    """Text fields decoded with the charsets SendGrid declares for them (UTF-8 otherwise)."""
    charsets: dict[str, str] = {}
    try:
        declared = json.loads(raw.get("charsets", b"{}").decode("utf-8", "replace") or "{}")
        if isinstance(declared, dict):
            charsets = {str(k): str(v) for k, v in declared.items()}
    except ValueError:
        pass
    decoded = {}
    for name, value in raw.items():
        charset = charsets.get(name, "utf-8")
        try:
            decoded[name] = value.decode(charset, "replace")
        except LookupError:  # a charset Python does not know
            decoded[name] = value.decode("utf-8", "replace")
    return decoded


def _envelope(form: Mapping[str, str]) -> tuple[list[str], str]:
    try:
        envelope = json.loads(form.get("envelope") or "{}")
    except ValueError:
        raise InvalidPayload("envelope is not JSON", "envelope") from None
    if not isinstance(envelope, dict):
        raise InvalidPayload("envelope is not a JSON object", "envelope")
    to = envelope.get("to") or []
    return ([str(t) for t in to] if isinstance(to, list) else [str(to)]), str(envelope.get("from") or "")


class _TextExtractor(HTMLParser):
    """The visible text of an HTML body (for mail that has no text part)."""

    _BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def display_name(raw: str) -> str:
    """A From display name with RFC 2047 encoded words (``=?UTF-8?B?…?=``) decoded."""
    try:
        return str(make_header(decode_header(raw))).strip()
    except (ValueError, LookupError):
        return raw.strip()


def message_id_of(headers: str) -> str:
    """The Message-ID from the raw header block, without angle brackets ("" when absent)."""
    parsed = HeaderParser().parsestr(headers)
    return str(parsed.get("Message-ID", "") or "").strip().strip("<>").strip()


def parse_inbound_email(form: Mapping[str, str], received_at: float) -> InboundMessage:
    """A SendGrid Inbound Parse post (decoded text fields) as an InboundMessage on the email channel."""
    envelope_to, envelope_from = _envelope(form)
    name, address = parseaddr(form.get("from", ""))
    try:
        sender = email_identifier(address)
    except InvalidIdentifier:
        # A From header we cannot read: the SMTP envelope sender is the next best handle.
        try:
            sender = email_identifier(envelope_from)
        except InvalidIdentifier:
            raise InvalidPayload("from is not an email address", "from") from None
        name = ""
    text = form.get("text", "")
    html = form.get("html", "")
    headers = form.get("headers", "")
    message_id = message_id_of(headers)
    if not message_id:
        # No Message-ID (rare, broken mailers): derive a stable one so retries still dedupe.
        digest = hashlib.sha256(
            "\x00".join((sender.value, form.get("subject", ""), headers, text or html)).encode()
        )
        message_id = "sha256:" + digest.hexdigest()[:40]
    recipient = envelope_to[0] if envelope_to else parseaddr(form.get("to", ""))[1]
    return InboundMessage(
        channel=Channel.EMAIL,
        provider=PROVIDER,
        provider_message_id=message_id,
        sender=sender,
        recipient=recipient,
        body=text.strip() if text.strip() else html_to_text(html),
        received_at=received_at,
        profile_name=display_name(name),
        subject=" ".join(form.get("subject", "").split()),
        html=html,
    )
