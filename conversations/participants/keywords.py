"""Consent keywords: STOP/START change SMS consent (audited); every keyword gets its reply."""

from __future__ import annotations

import copy

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.consent import write_preferences
from conversations.ids import new_message_id
from conversations.keywords import Keyword, KeywordReplies, classify
from conversations.models import Channel, InboundMessage, OutboundRequest
from conversations.preferences import ConsentChange, ConsentState, Preferences

KEYWORD_CHANNELS = frozenset({Channel.SMS})


def _keyword_message(item: BatchItem) -> InboundMessage | None:
    entry = item.entry
    if (
        isinstance(entry, InboundMessage)
        and entry.channel in KEYWORD_CHANNELS
        and not entry.unverified  # a message nobody vouches for never changes consent
        and classify(entry.body)
    ):
        return entry
    return None


class ConsentKeywords:
    """Turns a keyword into a consent change (``ctx.preferences``) and a confirmation to send."""

    def __init__(self, replies: KeywordReplies | None = None) -> None:
        self._replies = replies or KeywordReplies()

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        for item in ctx.items:
            if item.home and _keyword_message(item) is not None:
                ctx.read_preferences(item.customer_id, reads)

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = _keyword_message(item)
        if entry is None:
            return
        found = classify(entry.body)
        assert found is not None
        keyword, word = found
        customer_id = item.customer_id
        if keyword is not Keyword.HELP:
            before = ctx.preferences.get(customer_id)
            after = copy.deepcopy(before) if before else Preferences()
            state = ConsentState.OPTED_OUT if keyword is Keyword.OPT_OUT else ConsentState.OPTED_IN
            change = ConsentChange(
                entry.channel, state, f"{entry.channel.value}_keyword:{word}", entry.received_at
            )
            after.apply(change)
            write_preferences(tx, ctx.keys, customer_id, before, after, [change])
            ctx.preferences[customer_id] = after  # later sends in this batch see it
        # Keyword confirmations are transactional: they go out even to a number that just opted out.
        reply = OutboundRequest(
            new_message_id(),
            entry.sender,
            self._replies.for_keyword(keyword),
            "transactional",
            ctx.now,
            entry.channel,
        )
        ctx.add_item(customer_id, reply)

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        return None
