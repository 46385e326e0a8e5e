"""Every Redis key name Threadline uses, in one place.

Shard-owned keys carry a hash tag (``{s3}``) so that one shard's keys share a Redis
Cluster slot; the prefix lets several deployments (or test runs) share one Redis. They are
the hand-off structures a shard reads in one call (ingest and outbox streams, timers, dedupe,
dead letters): per shard, not per slot, because a shard reads one stream rather than hundreds.
A slot moved to another shard needs no key moved: its entries still arriving on the old
shard are forwarded home, like any entry for a customer homed elsewhere. Per-customer keys
are named after the customer id, which names the home slot.
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

    def __post_init__(self) -> None:
        if not self.prefix:
            # Config.key_prefix is empty until resolved (gateway.embedded): never write under "".
            raise ValueError("empty Redis key prefix: resolve the configuration first")

    def ingest(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:in"

    def outbox(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:out"

    def timers(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:timers"

    def timer_entries(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:timers:entries"

    def dedupe(self, shard: int, key: str) -> str:
        return f"{self.prefix}:{{s{shard}}}:dedupe:{key}"

    def dead_letters(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}:dead"

    def shard_pattern(self) -> str:
        """A SCAN pattern matching every shard-owned key (finds the shards an old layout ran)."""
        return f"{self.prefix}:{{s*}}:*"

    def layout(self) -> str:
        """Hash: the deployment's ``slots`` (fixed) and the most ``shards`` it has run with."""
        return f"{self.prefix}:layout"

    def send_attempt(self, message_id: str) -> str:
        return f"{self.prefix}:sendattempt:{message_id}"

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}:cust:{customer_id}"

    def identity(self, identifier: Identifier) -> str:
        return f"{self.prefix}:idx:{identifier.kind.value}:{identifier.value}"

    def preferences(self, customer_id: str) -> str:
        return f"{self.prefix}:prefs:{customer_id}"

    def consent_log(self, customer_id: str) -> str:
        return f"{self.prefix}:consent:{customer_id}"

    def preference_stats(self) -> str:
        return f"{self.prefix}:stats:preferences"

    def redirect(self, customer_id: str) -> str:
        """Set when a customer was merged into another: points at the survivor."""
        return f"{self.prefix}:redirect:{customer_id}"

    def merge_result(self, loser: str) -> str:
        return f"{self.prefix}:merged:{loser}"

    def merging_thread(self, customer_id: str) -> str:
        return f"{self.prefix}:thread:{customer_id}:merging"

    def merging_consent_log(self, customer_id: str) -> str:
        return f"{self.prefix}:consent:{customer_id}:merging"

    def merge_lock(self, a: str, b: str) -> str:
        first, second = sorted((a, b))
        return f"{self.prefix}:mergelock:{first}:{second}"

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

    def capability(self, channel: str, address: str) -> str:
        """Cached answer to "can this address receive ``channel``?" (e.g. RBM capability check)."""
        return f"{self.prefix}:cap:{channel}:{address}"

    # --- agent console -------------------------------------------------------------------

    def agents(self) -> str:
        """Hash: agent name -> agent record (agents created through the API)."""
        return f"{self.prefix}:agents"

    def agent_tokens(self) -> str:
        """Hash: SHA-256 (hex) of an agent token -> agent name."""
        return f"{self.prefix}:agents:tokens"

    def console_login(self, digest: str) -> str:
        """String with a TTL: a one-time sign-in token's SHA-256 (hex) -> agent name."""
        return f"{self.prefix}:agents:login:{digest}"

    def conversation(self, customer_id: str) -> str:
        """Hash: the console state of a customer's conversation (status, assignee, unread…)."""
        return f"{self.prefix}:conv:{customer_id}"

    def reply_authors(self, customer_id: str) -> str:
        """Hash: outbound message id -> the agent who sent it from the console."""
        return f"{self.prefix}:conv:{customer_id}:authors"

    def console_events(self) -> str:
        """Stream of conversation updates that every gateway fans out to its agents."""
        return f"{self.prefix}:console:events"

    def console_recent(self) -> str:
        """Zset: customer id scored by the time of the conversation's last message."""
        return f"{self.prefix}:console:recent"

    def console_assigned(self, agent: str) -> str:
        """Zset: the conversations assigned to one agent, scored by assignment time."""
        return f"{self.prefix}:console:assigned:{agent}"

    def console_typing(self) -> str:
        """Pub/sub channel (not a key) for ephemeral "agent is typing" signals."""
        return f"{self.prefix}:console:typing"

    def console_revoked(self) -> str:
        """Pub/sub channel (not a key): names of revoked agents, whose open sockets close."""
        return f"{self.prefix}:console:revoked"

    def engagement(self, customer_id: str) -> str:
        """Hash ``<channel>:score`` / ``<channel>:at``: decayed engagement per channel."""
        return f"{self.prefix}:engage:{customer_id}"

    def recent_sends(self, customer_id: str, message_type: str) -> str:
        """Sorted set of message ids by send time, for frequency caps."""
        return f"{self.prefix}:sends:{customer_id}:{message_type}"

    def campaign(self, campaign_id: str) -> str:
        """Hash with the campaign's ``spent`` so far, for its budget cap."""
        return f"{self.prefix}:campaign:{campaign_id}"

    # --- journeys ------------------------------------------------------------------------

    def journeys(self) -> str:
        """Hash: journey name -> its current version."""
        return f"{self.prefix}:journeys"

    def journey_versions(self, name: str) -> str:
        """Hash: version -> the stored definition of that version (versions are never changed)."""
        return f"{self.prefix}:journey:{name}:versions"

    def journey_stats(self, name: str) -> str:
        """Hash of counters: entered, active, completed, converted, exited, step:<id>:<metric>."""
        return f"{self.prefix}:journey:{name}:stats"

    def journey_instance(self, instance_id: str) -> str:
        """One journey instance (msgpack), written by the customer's home shard only."""
        return f"{self.prefix}:jinst:{instance_id}"

    def journey_active(self, customer_id: str) -> str:
        """Hash: journey name -> id of the customer's running instance of it."""
        return f"{self.prefix}:jactive:{customer_id}"

    def journey_history(self, customer_id: str) -> str:
        """Sorted set of every instance id of the customer, by start time."""
        return f"{self.prefix}:jhist:{customer_id}"

    def journey_entered(self, customer_id: str) -> str:
        """Hash: journey name -> when the customer last entered it (for entry rules)."""
        return f"{self.prefix}:jentered:{customer_id}"

    # --- segments -------------------------------------------------------------------------

    def segments(self) -> str:
        """Hash: segment name -> its current version (absent once deleted)."""
        return f"{self.prefix}:segments"

    def segment_versions(self, name: str) -> str:
        """Hash: version -> stored definition; ``latest``, ``digest`` and ``epoch`` (first version
        since the segment was last created: memberships from an earlier life do not count)."""
        return f"{self.prefix}:segment:{name}:versions"

    def segment_members(self, shard: int, name: str) -> str:
        """Sorted set (all scores 0, so it pages by id): the segment's members homed on ``shard``."""
        return f"{self.prefix}:seg:{{s{shard}}}:{name}"

    def segment_counts(self, shard: int) -> str:
        """Hash: segment name -> members on ``shard``, kept with every membership change."""
        return f"{self.prefix}:segcount:{{s{shard}}}"

    def segment_backfilled(self, shard: int) -> str:
        """Hash: segment name -> the version ``shard`` has finished backfilling."""
        return f"{self.prefix}:segfill:{{s{shard}}}"

    def segment_facts(self, customer_id: str) -> str:
        """The customer's compact segment facts (msgpack): series, memberships, snapshots."""
        return f"{self.prefix}:segfacts:{customer_id}"

    def customers_pattern(self) -> str:
        """A SCAN pattern matching every customer hash (a shard's backfill keeps its own)."""
        return f"{self.prefix}:cust:cus_*"

    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix (used by test cleanup)."""
        return f"{self.prefix}:*"
