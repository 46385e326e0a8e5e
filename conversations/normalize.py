"""Normalising customer handles before any lookup, so one person has one key."""

from __future__ import annotations

import phonenumbers

from conversations.models import Identifier, IdentifierKind


class InvalidIdentifier(ValueError):
    """An identifier that cannot be normalised; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


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


def phone_identifier(raw: str) -> Identifier:
    """A phone identifier in E.164."""
    return Identifier(IdentifierKind.PHONE, normalize_phone(raw))
