"""Every Redis key name Threadline uses, in one place.

Shard-owned keys carry a hash tag (``{s3}``) so that one shard's keys share a Redis
Cluster slot; the prefix lets several deployments (or test runs) share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

from conversations.models import Identifier

INGEST_FIELD = b"d"
CONSUMER_GROUP = "shard"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "tl"

    def ingest(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:in"

    def outbox(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:out"

    def timers(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:timers"

    def dedupe(self, shard: int, key: str) -> str:
        return f"{self.prefix}:{{s{shard}}}:dedupe:{key}"

    def dead_letters(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:dead"

    def send_attempt(self, message_id: str) -> str:
        return f"{self.prefix}:sendattempt:{message_id}"

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}:cust:{customer_id}"

    def identity(self, identifier: Identifier) -> str:
        return f"{self.prefix}:idx:{identifier.kind.value}:{identifier.value}"

    def thread(self, customer_id: str) -> str:
        return f"{self.prefix}:thread:{customer_id}"

    def message(self, message_id: str) -> str:
        return f"{self.prefix}:msg:{message_id}"

    def provider_message(self, provider: str, provider_message_id: str) -> str:
        return f"{self.prefix}:prov:{provider}:{provider_message_id}"

    def idempotency(self, owner: str, key_digest: str) -> str:
        """One Idempotency-Key's record, scoped to the API key (``owner``) that sent it."""
        return f"{self.prefix}:idem:{owner}:{key_digest}"

    def rate_limit(self, owner: str) -> str:
        """The token bucket of one API key."""
        return f"{self.prefix}:rate:{owner}"

    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix (used by test cleanup)."""
        return f"{self.prefix}:*"
