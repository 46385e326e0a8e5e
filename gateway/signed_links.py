"""Reading the signed links we hand to customers (preference page, unsubscribe): one mapping
of a bad token onto the answer the customer sees."""

from __future__ import annotations

from conversations.tokens import Claims, TokenExpired, TokenInvalid, verify
from gateway.errors import ApiError
from gateway.services import Services


def link_claims(services: Services, purpose: str, token: str, what: str) -> Claims:
    """The claims of a genuine ``purpose`` token; 410 when expired, 403 when forged or mangled."""
    try:
        return verify(services.config.secret_key, purpose, token, services.clock())
    except TokenExpired:
        raise ApiError(410, "link_expired", f"this {what} link has expired; ask for a new one") from None
    except TokenInvalid:
        raise ApiError(403, "link_invalid", f"this {what} link is not valid") from None
