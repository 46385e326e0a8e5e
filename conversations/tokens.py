"""Signed, expiring tokens for links we hand to customers (preference page, tracking links).

A token is ``base64url(msgpack(claims)) "." base64url(HMAC-SHA256(secret, purpose + payload))``;
the purpose is bound into the MAC so a token made for one use is refused by another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec


class TokenInvalid(ValueError):
    """Malformed, tampered with, or signed for another purpose."""


class TokenExpired(ValueError):
    """Genuine but past its expiry."""


class Claims(msgspec.Struct, frozen=True, array_like=True):
    subject: str
    expires_at: float
    extra: dict[str, str] = msgspec.field(default_factory=dict)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Claims).decode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose.encode() + b"\0" + payload, hashlib.sha256).digest()


def sign(secret: str, purpose: str, claims: Claims) -> str:
    payload = _encode(claims)
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def verify(secret: str, purpose: str, token: str, now: float) -> Claims:
    """The token's claims; TokenInvalid when forged or mangled, TokenExpired when too old."""
    try:
        encoded_payload, encoded_mac = token.split(".", 1)
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except ValueError:
        raise TokenInvalid("malformed token") from None
    if not hmac.compare_digest(mac, _mac(secret, purpose, payload)):
        raise TokenInvalid("bad signature")
    try:
        claims = _decode(payload)
    except msgspec.DecodeError:
        raise TokenInvalid("malformed claims") from None
    if claims.expires_at < now:
        raise TokenExpired("token expired")
    return claims
