"""Writing consent changes: the customer's current preferences plus an audit record kept forever."""

from __future__ import annotations

from collections import Counter

from redis.asyncio.client import Pipeline

from conversations import stream_entries
from conversations.codec import encode
from conversations.preferences import ConsentChange, Preferences
from conversations.store import Keys


def adoption_counts(preferences: Preferences | None) -> Counter[str]:
    """The adoption figures one customer contributes: first choice and opt-outs per type/channel."""
    counts: Counter[str] = Counter()
    if preferences is None:
        return counts
    for message_type, preference in preferences.by_type.items():
        if preference.order:
            counts[f"{message_type}:{preference.order[0].value}:first"] += 1
        for channel in preference.opted_out:
            counts[f"{message_type}:{channel.value}:opted_out"] += 1
    for channel in preferences.channel_opt_outs:
        counts[f"all:{channel.value}:opted_out"] += 1
    if preferences.by_type:
        counts["customers_with_preferences"] += 1
    return counts


def write_preferences(
    pipe: Pipeline,
    keys: Keys,
    customer_id: str,
    before: Preferences | None,
    after: Preferences,
    changes: list[ConsentChange],
) -> None:
    """Store ``after``, append each change to the audit log, and move the adoption counters."""
    pipe.set(keys.preferences(customer_id), encode(after))
    for change in changes:
        stream_entries.append(pipe, keys.consent_log(customer_id), change)
    delta = adoption_counts(after)
    delta.subtract(adoption_counts(before))
    for field, amount in delta.items():
        if amount:
            pipe.hincrby(keys.preference_stats(), field, amount)
