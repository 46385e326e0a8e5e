"""Normalising customer handles before any lookup, so one person has one key."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import phonenumbers

from conversations.models import Identifier, IdentifierKind


class InvalidIdentifier(ValueError):
    """An identifier that cannot be normalised; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9._:@/+-]{1,128}$")


# A memo of a pure function, not state: the same customers write again and again, and
# phonenumbers' parse + format was ~10 % of the gateway's time per message.
@functools.lru_cache(maxsize=65536)
def normalize_phone(raw: str, default_region: str = "US") -> str:
    """Return the E.164 form of a phone number, or raise InvalidIdentifier."""
    text = raw.strip()
    for prefix in ("whatsapp:", "tel:", "sms:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier("phone", f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidIdentifier("phone", f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_EMAIL_FORBIDDEN = frozenset(' \t\r\n<>()[],;:"\\')
MAX_EMAIL_LENGTH = 254


def normalize_email(raw: str) -> str:
    """Return the lower-cased form of an email address, or raise InvalidIdentifier.

    The whole address is lower-cased (local parts are case-sensitive in theory, never in
    practice), so ``Ann@Example.com`` and ``ann@example.com`` are one customer.
    """
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    address = text.lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidIdentifier("email", f"not an email address: {raw!r}")
    if len(address) > MAX_EMAIL_LENGTH or len(local) > 64:
        raise InvalidIdentifier("email", f"email address too long: {raw!r}")
    if any(ch in _EMAIL_FORBIDDEN or ord(ch) < 32 for ch in address) or "@" in local:
        raise InvalidIdentifier("email", f"not an email address: {raw!r}")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidIdentifier("email", f"not an email address: {raw!r}")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_valid_label(label) for label in labels):
        raise InvalidIdentifier("email", f"not a valid email domain: {raw!r}")
    return address


def _valid_label(label: str) -> bool:
    try:
        ascii_label = label.encode("idna").decode("ascii") if not label.isascii() else label
    except UnicodeError:
        return False
    return (
        0 < len(ascii_label) <= 63
        and not ascii_label.startswith("-")
        and not ascii_label.endswith("-")
        and all(ch.isalnum() or ch == "-" for ch in ascii_label)
    )


def normalize_wa_id(raw: str) -> str:
    """A WhatsApp id is the phone number's digits without '+' (Meta's ``wa_id``)."""
    return normalize_phone("+" + raw.strip().lstrip("+"))[1:]


def normalize_external_id(raw: str) -> str:
    text = raw.strip()
    if not _EXTERNAL_ID.match(text):
        raise InvalidIdentifier(
            "external_id", "external ids are 1-128 characters of A-Z a-z 0-9 . _ : @ / + -"
        )
    return text


_NORMALIZERS: dict[IdentifierKind, Callable[[str], str]] = {
    IdentifierKind.PHONE: normalize_phone,
    IdentifierKind.RCS: normalize_phone,
    IdentifierKind.EMAIL: normalize_email,
    IdentifierKind.WA_ID: normalize_wa_id,
    IdentifierKind.EXTERNAL_ID: normalize_external_id,
}


def identifier(kind: IdentifierKind | str, raw: str) -> Identifier:
    """Normalise ``raw`` as an identifier of ``kind``; InvalidIdentifier names the kind as field."""
    kind = IdentifierKind(kind)
    try:
        return Identifier(kind, _NORMALIZERS[kind](raw))
    except InvalidIdentifier as exc:
        raise InvalidIdentifier(kind.value, str(exc)) from exc


def phone_identifier(raw: str) -> Identifier:
    """A phone identifier in E.164."""
    return identifier(IdentifierKind.PHONE, raw)


def email_identifier(raw: str) -> Identifier:
    return identifier(IdentifierKind.EMAIL, raw)
