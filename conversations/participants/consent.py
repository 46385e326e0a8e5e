"""Consent changes a customer makes themselves: keywords on every channel, one-click opt-outs.

A keyword (``conversations.keywords``) or an ``ConsentRequest`` changes the customer's
preferences (``ctx.preferences``, so later sends in the batch see it) and is audited with its
channel and source. A keyword is confirmed on the channel it came from; a call confirms in its
own TwiML and a one-click opt-out on its page, so those get no message.
"""

from __future__ import annotations

import copy

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.consent import write_preferences
from conversations.ids import new_message_id
from conversations.keywords import ConsentKeyword, Keyword, KeywordReplies, consent_keyword
from conversations.models import Channel, ConsentRequest, InboundMessage, OutboundRequest, ShardEntry
from conversations.preferences import ConsentChange, ConsentState, Preferences


def _keyword(entry: ShardEntry) -> ConsentKeyword | None:
    if isinstance(entry, InboundMessage) and not entry.unverified:  # nobody vouches: no consent change
        return consent_keyword(entry)
    return None


def _is_change(entry: ShardEntry) -> bool:
    return isinstance(entry, ConsentRequest) or _keyword(entry) is not None


class ConsentChanges:
    """Applies keywords and opt-out requests to the customer's preferences, audited."""

    def __init__(self, replies: KeywordReplies | None = None) -> None:
        self._replies = replies or KeywordReplies()

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        for item in ctx.items:
            if item.home and _is_change(item.entry):
                ctx.read_preferences(item.customer_id, reads)

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = item.entry
        if isinstance(entry, ConsentRequest):
            change = ConsentChange(
                entry.channel,
                ConsentState.OPTED_OUT if entry.opted_out else ConsentState.OPTED_IN,
                entry.source,
                entry.at,
                entry.message_type,
                entry.message_id,
            )
            self._change(item.customer_id, change, ctx, tx)
            if entry.customer is not None:  # addressed by handle: it may be our first word of them
                ctx.customer_writes.touch(item.customer_id, ctx.now, entry.customer)
            return
        found = _keyword(entry)
        if found is None or not isinstance(entry, InboundMessage):
            return
        if found.keyword is not Keyword.HELP:
            state = ConsentState.OPTED_OUT if found.keyword is Keyword.OPT_OUT else ConsentState.OPTED_IN
            change = ConsentChange(
                entry.channel,
                state,
                found.source,
                entry.received_at,
                found.message_type,
                entry.provider_message_id,
            )
            self._change(item.customer_id, change, ctx, tx)
        if found.confirm_by_message:
            self._confirm(item.customer_id, entry, found, ctx)

    def _change(self, customer_id: str, change: ConsentChange, ctx: BatchContext, tx: Pipeline) -> None:
        before = ctx.preferences.get(customer_id)
        after = copy.deepcopy(before) if before else Preferences()
        after.apply(change)
        write_preferences(tx, ctx.keys, customer_id, before, after, [change])
        ctx.preferences[customer_id] = after  # later sends in this batch see it

    def _confirm(
        self, customer_id: str, entry: InboundMessage, found: ConsentKeyword, ctx: BatchContext
    ) -> None:
        """The confirmation, on the keyword's own channel; transactional, so it goes out even
        to a customer who just opted out there."""
        body = self._replies.for_keyword(found.keyword, found.message_type)
        reply = OutboundRequest(
            new_message_id(),
            entry.sender,
            body,
            "transactional",
            ctx.now,
            entry.channel,
            subject=_reply_subject(entry),
        )
        ctx.add_item(customer_id, reply)

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        return None


def _reply_subject(entry: InboundMessage) -> str:
    """An email confirmation answers the customer's own message ("Re: …"); "" elsewhere."""
    if entry.channel is not Channel.EMAIL:
        return ""
    subject = entry.subject.strip()
    return subject if subject.lower().startswith("re:") else f"Re: {subject or 'your message'}"
