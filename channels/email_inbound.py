"""Inbound email as SendGrid Inbound Parse posts it (multipart/form-data), parsed into an InboundMessage.

The form carries ``from``, ``to``, ``subject``, ``text``, ``html``, ``headers`` (the raw
header block), ``envelope`` (JSON: SMTP ``to`` list and ``from``), ``charsets`` (JSON: the
charset of each text field), ``attachments`` (a count), ``SPF`` and ``dkim`` (SendGrid's checks)
and the files themselves. The sender is the EMAIL identifier of the ``From`` header; a message
whose sender neither check vouches for is ``unverified``. Duplicates are recognised by Message-ID.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from email.header import decode_header, make_header
from email.parser import HeaderParser
from email.utils import parseaddr
from html.parser import HTMLParser

import msgspec

from channels.base import InvalidPayload, WebhookRejected
from channels.inbound import (
    BodyKind,
    InboundAdapter,
    InboundEntry,
    Parsed,
    WebhookReply,
    WebhookRequest,
    read_form,
)
from conversations.models import Channel, InboundMessage
from conversations.normalize import InvalidIdentifier, email_identifier

PROVIDER = "sendgrid"
# What one inbound email may store (characters): SendGrid posts up to 2 MB text plus 2 MB HTML,
# and anyone can email us. Longer parts are cut, marked, and their full size kept in attributes.
MAX_STORED_TEXT = 64 * 1024
MAX_STORED_HTML = 256 * 1024
MAX_STORED_SUBJECT = 998  # RFC 5322's line limit


class SendGridInboundForm(msgspec.Struct):
    """The text parts SendGrid Inbound Parse posts for an email (attachment files are drained)."""

    to: str = ""
    from_: str = msgspec.field(default="", name="from")
    cc: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    headers: str = ""
    envelope: str = ""
    charsets: str = ""
    attachments: str = ""
    dkim: str = ""  # SendGrid's DKIM results, e.g. "{@example.com : pass}"
    spf: str = msgspec.field(default="", name="SPF")  # SendGrid's SPF result for the envelope sender


class InboundEmailReceived(msgspec.Struct):
    """The answer to SendGrid: whether the email was new or a retry of one already stored."""

    status: str  # received | duplicate


TEXT_FIELDS: tuple[str, ...] = SendGridInboundForm.__struct_encode_fields__


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


def _envelope(form: SendGridInboundForm) -> tuple[list[str], str]:
    try:
        envelope = json.loads(form.envelope or "{}")
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


def capped(value: str, limit: int, marker: str) -> tuple[str, int | None]:
    """``value`` cut to ``limit`` characters with ``marker`` (given the full size) appended, and
    the full size; or ``value`` itself and None when it fits."""
    if len(value) <= limit:
        return value, None
    return value[:limit] + marker.format(size=len(value)), len(value)


_DKIM_RESULT = re.compile(r"@([^\s:,{}]+)\s*:\s*([A-Za-z]+)")


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(".").lower()


def _aligned(domain: str, sender_domain: str) -> bool:
    """Relaxed alignment (as DMARC's): the same domain, or one a subdomain of the other."""
    if not domain or not sender_domain:
        return False
    return (
        domain == sender_domain
        or domain.endswith("." + sender_domain)
        or sender_domain.endswith("." + domain)
    )


def sender_authenticated(sender: str, envelope_from: str, spf: str, dkim: str) -> bool:
    """Whether SendGrid vouches for ``sender``: a passing DKIM signature of its domain, or SPF
    passing for an envelope sender of its domain. A pass for someone else's domain does not count:
    anyone can sign their own mail and put a customer's address in From."""
    domain = _domain(sender)
    if any(
        result.lower() == "pass" and _aligned(_domain("@" + signer), domain)
        for signer, result in _DKIM_RESULT.findall(dkim)
    ):
        return True
    return spf.strip().lower() == "pass" and _aligned(_domain(envelope_from), domain)


def parse_inbound_email(form: Mapping[str, str], received_at: float) -> InboundMessage:
    """A SendGrid Inbound Parse post (decoded text fields) as an InboundMessage on the email channel."""
    fields = read_form(form, SendGridInboundForm)
    envelope_to, envelope_from = _envelope(fields)
    name, address = parseaddr(fields.from_)
    try:
        sender = email_identifier(address)
    except InvalidIdentifier:
        # A From header we cannot read: the SMTP envelope sender is the next best handle.
        try:
            sender = email_identifier(envelope_from)
        except InvalidIdentifier:
            raise InvalidPayload("from is not an email address", "from") from None
        name = ""
    text, html, headers = fields.text, fields.html, fields.headers
    message_id = message_id_of(headers)
    if not message_id:
        # No Message-ID (rare, broken mailers): derive a stable one so retries still dedupe.
        digest = hashlib.sha256("\x00".join((sender.value, fields.subject, headers, text or html)).encode())
        message_id = "sha256:" + digest.hexdigest()[:40]
    recipient = envelope_to[0] if envelope_to else parseaddr(fields.to)[1]
    verified = sender_authenticated(sender.value, envelope_from, fields.spf, fields.dkim)
    html, html_size = capped(
        html, MAX_STORED_HTML, "\n<!-- truncated by Threadline: {size} characters in all -->"
    )
    body, body_size = capped(
        text.strip() if text.strip() else html_to_text(html),
        MAX_STORED_TEXT,
        "\n[… truncated by Threadline: {size} characters in all]",
    )
    attributes = {}
    if body_size is not None:
        attributes["text_truncated_from"] = str(body_size)
    if html_size is not None:
        attributes["html_truncated_from"] = str(html_size)
    return InboundMessage(
        channel=Channel.EMAIL,
        provider=PROVIDER,
        provider_message_id=message_id,
        sender=sender,
        recipient=recipient,
        body=body,
        received_at=received_at,
        profile_name=display_name(name) if verified else "",
        subject=" ".join(fields.subject.split())[:MAX_STORED_SUBJECT],
        html=html,
        attributes=attributes,
        unverified=not verified,
    )


def presented_secret(query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """The secret as ``?secret=…`` or as the password of HTTP basic auth ("" when neither)."""
    if "secret" in query:
        return query["secret"]
    scheme, _, encoded = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        _, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return password


class SendGridInboundWebhook(InboundAdapter):
    """SendGrid Inbound Parse: the shared secret is checked before anything is read or stored.

    An email lands once per Message-ID on the sender's shard.
    """

    provider = PROVIDER
    body_kind = BodyKind.MULTIPART
    content_types = ("multipart/form-data",)
    form_fields = frozenset(TEXT_FIELDS)
    verifies_before_body = True

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def verify(self, request: WebhookRequest) -> None:
        if not self._secret:
            raise WebhookRejected("inbound_email_disabled", "no inbound email secret is configured")
        presented = presented_secret(request.query, request.headers)
        if not presented or not hmac.compare_digest(presented.encode(), self._secret.encode()):
            code = "secret_missing" if not presented else "secret_invalid"
            raise WebhookRejected(code, "the inbound email secret is missing or wrong")

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        entry = parse_inbound_email(decode_fields(request.parts), now)
        return Parsed([InboundEntry(entry, f"email:msg:{entry.provider_message_id}", entry.sender)])

    def answer(self, parsed: Parsed, fresh: Sequence[bool]) -> WebhookReply:
        received = InboundEmailReceived("received" if all(fresh) else "duplicate")
        return WebhookReply(msgspec.json.encode(received), "application/json")
