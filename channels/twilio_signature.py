"""Twilio's X-Twilio-Signature: HMAC over the public URL plus the sorted form parameters.

Follows Twilio's documented scheme (see the ``RequestValidator`` of the official SDK, which
the tests use as the reference): the URL Twilio called, then for each parameter name in
sorted order each of its distinct values in sorted order, appended as name+value; HMAC-SHA1
(or HMAC-SHA256 when the webhook's signature settings say so) keyed by the auth token, base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ALGORITHMS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}


def signing_payload(url: str, params: Iterable[tuple[str, str]]) -> str:
    """The exact string Twilio signs for this URL and these form parameters."""
    return url + _signed_params(params)


def _signed_params(params: Iterable[tuple[str, str]]) -> str:
    """For each name in sorted order, each of its distinct values in sorted order, as name+value."""
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))


def compute_signature(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], algorithm: str = "HMAC_SHA1"
) -> str:
    """The base64 signature Twilio would send for this request."""
    digest = _ALGORITHMS[algorithm.upper()]
    mac = hmac.new(auth_token.encode(), signing_payload(url, params).encode(), digest)
    return base64.b64encode(mac.digest()).decode()


def url_variants(url: str) -> tuple[str, ...]:
    """The URL as given, without its default port and with it: Twilio signs either form."""
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError:  # a malformed URL (bad port, broken IPv6 literal) is only itself
        return (url,)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    port = explicit_port or _DEFAULT_PORTS.get(parts.scheme)
    without_port = urlunsplit(parts._replace(netloc=prefix + host))
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{port}")) if port else url
    return tuple(dict.fromkeys((url, without_port, with_port)))


def algorithm_from_settings(settings_header: str | None) -> str:
    """Read ``algorithm=`` from X-Twilio-Webhooks-Signature-Settings; default HMAC_SHA1."""
    for part in (settings_header or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def is_valid_signature(
    auth_token: str,
    url: str,
    params: Iterable[tuple[str, str]],
    signature: str | None,
    algorithm: str = "HMAC_SHA1",
) -> bool:
    """Constant-time check of a received signature against every accepted URL form."""
    if not signature or not auth_token or algorithm.upper() not in _ALGORITHMS:
        return False
    digest = _ALGORITHMS[algorithm.upper()]
    key = auth_token.encode()
    signed_params = _signed_params(params).encode()
    received = signature.strip().encode()

    def matches(variant: str) -> bool:
        mac = hmac.new(key, variant.encode() + signed_params, digest)
        return hmac.compare_digest(base64.b64encode(mac.digest()), received)

    # The configured URL is what Twilio signs in practice, so it goes first and the port
    # variants cost a HMAC only when it fails. Stopping at a match tells a caller which URL
    # form matched, which is public anyway; nothing about the token.
    return matches(url) or any(matches(variant) for variant in url_variants(url) if variant != url)
