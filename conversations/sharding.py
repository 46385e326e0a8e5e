"""Which shard owns what: a stable hash of an identifier, or the home shard in a customer id."""

from __future__ import annotations

import hashlib

from conversations.ids import home_shard_of
from conversations.models import Identifier


def shard_for_identifier(identifier: Identifier, shards: int) -> int:
    """Stable across processes and machines (unlike ``hash()``): blake2b of ``kind:value``."""
    digest = hashlib.blake2b(f"{identifier.kind}:{identifier.value}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % shards


def shard_for_customer(customer_id: str, shards: int) -> int | None:
    """The customer's home shard, or None when the id is malformed or out of range."""
    shard = home_shard_of(customer_id)
    if shard is None or shard >= shards:
        return None
    return shard
