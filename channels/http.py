"""The one place provider HTTP failures become typed ProviderErrors (adapters own only the format)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from channels.base import ProviderError

ErrorCodeReader = Callable[[bytes], tuple[str, str]]


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def request_provider(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    read_error: ErrorCodeReader,
    timeout: float = 10.0,
    **kwargs: Any,
) -> bytes:
    """Make one provider call; return the body of a 2xx, raise ProviderError otherwise.

    ``read_error`` turns a provider's error body into (code, message).
    """
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=timeout), **kwargs
        ) as response:
            body = await response.read()
            if response.status < 300:
                return body
            code, message = read_error(body)
            retryable = response.status == 429 or response.status >= 500
            raise ProviderError(
                message or f"provider answered HTTP {response.status}",
                code=code,
                retryable=retryable,
                retry_after=_retry_after(response.headers),
                http_status=response.status,
            )
    except TimeoutError as exc:
        raise ProviderError("provider call timed out", code="timeout", retryable=True) from exc
    except aiohttp.ClientError as exc:
        raise ProviderError(f"provider unreachable: {exc}", code="network", retryable=True) from exc
