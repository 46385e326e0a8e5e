"""Our entries on Redis streams: one field (``INGEST_FIELD``) holding the msgpack-encoded struct."""

from __future__ import annotations

from typing import Any

from conversations.codec import encode
from conversations.store import INGEST_FIELD


def entry_fields(value: Any) -> dict[bytes, bytes]:
    """The stream fields that carry ``value``."""
    return {INGEST_FIELD: encode(value)}


def append(pipe: Any, key: str, value: Any, maxlen: int | None = None) -> None:
    """Queue an XADD of ``value`` onto the stream ``key`` (on a pipeline or a client)."""
    if maxlen is None:
        pipe.xadd(key, entry_fields(value))
    else:
        pipe.xadd(key, entry_fields(value), maxlen=maxlen, approximate=True)
