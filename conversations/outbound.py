"""Outbound messages inside a shard batch: route each one, start its attempts, walk the chain.

The ingest processor calls in at three points: a new ``OutboundRequest``, a status or send
outcome applied to an attempt record, and a routing timer coming due. Each attempt is its
own message record (``<message id>-<n>``, ``parent_id`` naming the message) and its own
outbox job, so provider ids, statuses and the sender's never-twice marker are per attempt.
The message record carries the ``Routing`` state: the request, the decision, the attempts.
Everything here writes into the batch's pipeline; nothing is read except in ``prepare``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from conversations import timers
from conversations.codec import decode_message, encode
from conversations.config import WhatsAppTemplate
from conversations.models import (
    Channel,
    DecisionOutcome,
    Direction,
    IngestEntry,
    MessageLogged,
    MessageRecord,
    MessageStatus,
    OutboundContent,
    OutboundRequest,
    OutboxJob,
    RouteAttempt,
    RouteRequest,
    Routing,
    RoutingDecision,
    RoutingLogged,
    RoutingTimer,
    StatusChange,
    TemplateRef,
)
from conversations.preferences import Preferences
from conversations.pricing import DEFAULT_PRICES, PriceTable
from conversations.routing.content import Content, adapt_for
from conversations.routing.context import (
    CustomerContext,
    build_context,
    capped_types,
    mark_unreachable,
    queue_context_reads,
    record_send,
)
from conversations.routing.decide import decide
from conversations.routing.engagement import EngagementRecorder, SendTimeOptimiser
from conversations.routing.policy import RoutingPolicy, load_policy
from conversations.sharding import shard_for_customer
from conversations.status import advances
from conversations.store import INGEST_FIELD, Keys

log = logging.getLogger(__name__)

FAILURES = frozenset({MessageStatus.FAILED, MessageStatus.UNDELIVERED})
SUCCESSFUL = frozenset({"succeeded", "late_success"})


def attempt_id(message_id: str, number: int) -> str:
    """The id of the ``number``-th attempt (1-based) of a message."""
    return f"{message_id}-{number}"


def _timeout_timer(attempt: str) -> str:
    return f"route:{attempt}:timeout"


def _meets(status: MessageStatus, success: MessageStatus) -> bool:
    """Whether ``status`` is at least the step's success condition (sent < delivered < read)."""
    return status not in FAILURES and not advances(status, success)


# Renders an outbound message for the channel it goes out on (link tracking, SMS segments,
# cost for the decision's country); see channels.outbound.OutboundPreparer.
OutboundPreparer = Callable[[OutboundRequest, str, Channel, str], OutboundContent]


@dataclass(slots=True)
class RoutingBatch:
    """What one batch read for routing: customer contexts and the messages being routed."""

    contexts: dict[str, CustomerContext] = field(default_factory=dict)
    parents: dict[str, MessageRecord] = field(default_factory=dict)
    campaign_spent: dict[str, float] = field(default_factory=dict)


class OutboundRouter:
    """Routing and fallback for one shard's outbound messages."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        shard: int,
        shards: int,
        *,
        policy: RoutingPolicy | None = None,
        prices: PriceTable = DEFAULT_PRICES,
        channels: Collection[Channel] | None = None,
        send_time: SendTimeOptimiser | None = None,
        prepare: OutboundPreparer | None = None,
        whatsapp_templates: Mapping[str, WhatsAppTemplate] | None = None,
    ) -> None:
        self._prepare = prepare
        # Approved WhatsApp templates by name, for the language of a template routing picks.
        self._template_languages = {t.name: t.language for t in (whatsapp_templates or {}).values()}
        self._redis = redis
        self._keys = keys
        self._shard = shard
        self._shards = shards
        self._policy = policy or load_policy()
        # The deployment's approved WhatsApp template per message type (config whatsapp.templates)
        # stands in for the policy's default one outside the 24-hour window.
        self._wa_template_by_type = {t: tpl.name for t, tpl in (whatsapp_templates or {}).items()}
        self._prices = prices
        self._channels = frozenset(channels) if channels is not None else None
        self._send_time = send_time
        self._capped = capped_types(self._policy)
        self._engagement = EngagementRecorder(keys)

    # --- read phase -----------------------------------------------------------------------

    async def prepare(
        self, items: Sequence[tuple[str, IngestEntry]], records: Mapping[str, MessageRecord], now: float
    ) -> RoutingBatch:
        """One pipelined read for the whole batch: contexts, routed messages, campaign spend."""
        batch = RoutingBatch()
        customers: set[str] = set()
        parent_ids: set[str] = set()
        campaigns: set[str] = set()
        for customer_id, entry in items:
            if isinstance(entry, OutboundRequest):
                if shard_for_customer(customer_id, self._shards) in (None, self._shard):
                    customers.add(customer_id)
                    if entry.campaign_id and entry.budget is not None:
                        campaigns.add(entry.campaign_id)
            elif isinstance(entry, RoutingTimer):
                parent_ids.add(entry.message_id)
                if entry.kind == "deferred":
                    customers.add(entry.customer_id)
        for record in records.values():
            if record.parent_id:
                parent_ids.add(record.parent_id)
        for message_id in parent_ids & records.keys():  # one object per record in a batch
            batch.parents[message_id] = records[message_id]
        wanted = sorted(parent_ids - records.keys())
        if not (wanted or customers or campaigns):
            return batch
        ordered = sorted(customers)
        pipe = self._redis.pipeline(transaction=False)
        if wanted:
            pipe.mget([self._keys.message(mid) for mid in wanted])
        counts = [queue_context_reads(pipe, self._keys, cid, self._capped, now) for cid in ordered]
        for campaign in sorted(campaigns):
            pipe.hget(self._keys.campaign(campaign), "spent")
        replies = await pipe.execute()
        position = 0
        if wanted:
            for mid, blob in zip(wanted, replies[0], strict=True):
                if blob:
                    batch.parents[mid] = decode_message(blob)
            position = 1
        for customer_id, count in zip(ordered, counts, strict=True):
            chunk = replies[position : position + count]
            batch.contexts[customer_id] = build_context(customer_id, chunk, self._capped, now)
            position += count
        for campaign, spent in zip(sorted(campaigns), replies[position:], strict=True):
            batch.campaign_spent[campaign] = float(spent or 0)
        await self._read_deferred_campaigns(batch, items)
        return batch

    async def _read_deferred_campaigns(
        self, batch: RoutingBatch, items: Sequence[tuple[str, IngestEntry]]
    ) -> None:
        """A deferred message's campaign is only known once its record is read (rare: a 2nd read)."""
        missing = set()
        for _, entry in items:
            if isinstance(entry, RoutingTimer) and entry.kind == "deferred":
                parent = batch.parents.get(entry.message_id)
                request = parent.routing.request if parent and parent.routing else None
                if request and request.campaign_id and request.budget is not None:
                    missing.add(request.campaign_id)
        missing -= batch.campaign_spent.keys()
        if missing:
            ordered = sorted(missing)
            pipe = self._redis.pipeline(transaction=False)
            for campaign in ordered:
                pipe.hget(self._keys.campaign(campaign), "spent")
            for campaign, value in zip(ordered, await pipe.execute(), strict=True):
                batch.campaign_spent[campaign] = float(value or 0)

    # --- entry points (write phase) ---------------------------------------------------------

    def request(
        self,
        pipe: Pipeline,
        batch: RoutingBatch,
        customer_id: str,
        entry: OutboundRequest,
        now: float,
        session_id: str = "",
    ) -> None:
        """A new outbound message: decide, record, and start the first step (or defer/refuse)."""
        context = self._context(batch, customer_id)
        context.know(entry.recipient)
        request = RouteRequest(
            message_id=entry.message_id,
            message_type=entry.message_type,
            body=entry.body,
            recipient=entry.recipient,
            channel=entry.channel,
            campaign_id=entry.campaign_id,
            budget=entry.budget,
            track=entry.track,
            whatsapp_template=(
                entry.template.name
                if entry.template
                else self._wa_template_by_type.get(entry.message_type, "")
            ),
        )
        decision = self._decide(request, context, now)
        record = MessageRecord(
            id=entry.message_id,
            customer_id=customer_id,
            channel=self._display_channel(decision, request),
            direction=Direction.OUTBOUND,
            body=entry.body,
            status=MessageStatus.ACCEPTED,
            created_at=entry.requested_at,
            updated_at=now,
            message_type=entry.message_type,
            address=entry.recipient.value,
            history=[StatusChange(MessageStatus.ACCEPTED, now)],
            routing=Routing(request=request, decision=decision),
            rich_card=entry.rich_card,
            template=entry.template,
            subject=entry.subject,
            html=entry.html,
            template_kind=entry.template_kind,
        )
        batch.parents[record.id] = record
        logged = MessageLogged(record.id, record.channel, Direction.OUTBOUND, entry.requested_at, session_id)
        pipe.xadd(self._keys.thread(customer_id), {INGEST_FIELD: encode(logged)})
        self._apply_decision(pipe, batch, record, context, now)

    def after_update(self, pipe: Pipeline, batch: RoutingBatch, record: MessageRecord, now: float) -> None:
        """An attempt's status changed (``record.history[-1]``): succeed, fall back, or mirror it."""
        if not record.parent_id or not record.history:
            return
        parent = batch.parents.get(record.parent_id)
        if parent is None or parent.routing is None:
            log.warning("attempt %s: its message %s is unknown", record.id, record.parent_id)
            return
        routing = parent.routing
        attempt = next((a for a in routing.attempts if a.id == record.id), None)
        if attempt is None:
            return
        change = record.history[-1]
        attempt.status = record.status
        attempt.error_code = record.error_code
        parent.history.append(change)
        parent.updated_at = max(parent.updated_at, change.at)
        if change.status in (MessageStatus.DELIVERED, MessageStatus.READ):
            event = "delivered" if change.status is MessageStatus.DELIVERED else "read"
            self._engagement.record(pipe, parent.customer_id, attempt.channel, event, change.at)
        step = routing.decision.chain[attempt.step]
        if change.status in FAILURES:
            self._on_failure(pipe, batch, parent, attempt, record, change, now)
        elif _meets(change.status, step.success):
            self._on_success(pipe, parent, attempt, record, change)
        elif routing.state != "exhausted":
            if attempt is routing.attempts[-1]:
                self._mirror(parent, record)
            if advances(parent.status, change.status):
                parent.status = change.status
        self._save(pipe, parent)

    def on_timer(self, pipe: Pipeline, batch: RoutingBatch, entry: RoutingTimer, now: float) -> None:
        """A routing timer came due; stale ones (already answered by a status) change nothing."""
        parent = batch.parents.get(entry.message_id)
        if parent is None or parent.routing is None:
            log.warning("routing timer for unknown message %s", entry.message_id)
            return
        routing = parent.routing
        if entry.kind == "deferred":
            if routing.state != "deferred":
                return
            context = self._context(batch, parent.customer_id)
            context.know(routing.request.recipient)
            routing.decision = self._decide(routing.request, context, now)
            routing.next_step = 0
            self._apply_decision(pipe, batch, parent, context, now)
        elif entry.kind == "timeout":
            attempt = next((a for a in routing.attempts if a.id == entry.attempt_id), None)
            current = routing.attempts[-1] if routing.attempts else None
            if attempt is None or attempt is not current or attempt.outcome != "pending":
                return
            if routing.state != "active":
                return
            step = routing.decision.chain[attempt.step]
            attempt.outcome = "timed_out"
            why = f"no {step.success} on {attempt.channel} within {step.timeout:g}s"
            self._log(pipe, parent, "timeout", now, attempt.channel, attempt.id, why)
            self._advance(pipe, batch, parent, now, why)
            self._save(pipe, parent)
        elif entry.kind == "follow_up":
            if routing.state == "deferred" or any(a.step == entry.step for a in routing.attempts):
                return
            if routing.state == "exhausted":
                routing.state = "active"
            self._start_step(pipe, batch, parent, entry.step, now)
            self._save(pipe, parent)

    def consent_changed(self, batch: RoutingBatch, customer_id: str, preferences: Preferences) -> None:
        """A keyword earlier in this batch changed consent: later sends in it must see that."""
        context = batch.contexts.get(customer_id)
        if context is not None:
            context.preferences = preferences

    def saw_inbound(self, batch: RoutingBatch, customer_id: str, channel: Channel, at: float) -> None:
        """An inbound message earlier in this batch opens that channel's window for later sends."""
        context = batch.contexts.get(customer_id)
        if context is not None:
            context.last_inbound_at[channel] = max(context.last_inbound_at.get(channel, at), at)

    def record_reply(self, pipe: Pipeline, customer_id: str, channel: Channel, at: float) -> None:
        """An inbound message counts as a reply on its channel for engagement."""
        self._engagement.record(pipe, customer_id, channel, "replied", at)

    # --- the chain --------------------------------------------------------------------------

    def _apply_decision(
        self,
        pipe: Pipeline,
        batch: RoutingBatch,
        parent: MessageRecord,
        context: CustomerContext,
        now: float,
    ) -> None:
        assert parent.routing is not None
        routing = parent.routing
        decision = routing.decision
        if decision.outcome is DecisionOutcome.DEFER:
            assert decision.deferred_until is not None
            routing.state = "deferred"
            hold = decision.hold.value if decision.hold else ""
            self._log(pipe, parent, "deferred", now, parent.channel, detail=hold, decision=decision)
            timer = RoutingTimer(parent.id, parent.customer_id, "deferred")
            timers.schedule(
                pipe, self._keys, self._shard, f"route:{parent.id}:deferred", decision.deferred_until, timer
            )
        elif decision.outcome is DecisionOutcome.REFUSE:
            routing.state = "refused"
            code, message = _refusal(decision)
            self._log(pipe, parent, "refused", now, parent.channel, detail=message, decision=decision)
            parent.status = MessageStatus.FAILED
            parent.error_code = code
            parent.error_message = message
            parent.history.append(StatusChange(MessageStatus.FAILED, now, "", code))
        else:
            routing.state = "active"
            self._log(pipe, parent, "decided", now, decision.chosen or parent.channel, decision=decision)
            rules = self._policy.rules_for(decision.message_type)[1]
            if rules.frequency_cap is not None:
                window = rules.frequency_cap.window_seconds
                record_send(
                    pipe, self._keys, parent.customer_id, decision.message_type, parent.id, now, window
                )
                context.count_send(decision.message_type, now)
            if decision.mode == "all":
                for index, step in enumerate(decision.chain):
                    if step.delay > 0:
                        follow_up = RoutingTimer(parent.id, parent.customer_id, "follow_up", step=index)
                        timer_id = f"route:{parent.id}:step{index}"
                        timers.schedule(pipe, self._keys, self._shard, timer_id, now + step.delay, follow_up)
                    else:
                        self._start_step(pipe, batch, parent, index, now)
            else:
                self._start_step(pipe, batch, parent, 0, now)
        self._save(pipe, parent)

    def _start_step(
        self, pipe: Pipeline, batch: RoutingBatch, parent: MessageRecord, index: int, now: float
    ) -> None:
        """Create the attempt for step ``index``: its record, its outbox job, its timeout timer."""
        assert parent.routing is not None
        routing = parent.routing
        step = routing.decision.chain[index]
        # Each step renders from what was asked, not from what an earlier step sent.
        content = adapt_for(step.channel, Content(routing.request.body, routing.request.media, step.template))
        attempt = attempt_id(parent.id, len(routing.attempts) + 1)
        prepared = self._prepared(parent, attempt, step.channel, step.address, content.body)
        template = self._whatsapp_template(parent, step.channel, content.template)
        record = MessageRecord(
            id=attempt,
            customer_id=parent.customer_id,
            channel=step.channel,
            direction=Direction.OUTBOUND,
            body=prepared.body,
            status=MessageStatus.ACCEPTED,
            created_at=now,
            updated_at=now,
            message_type=parent.message_type,
            address=step.address,
            history=[StatusChange(MessageStatus.ACCEPTED, now)],
            parent_id=parent.id,
            rich_card=parent.rich_card if step.channel is Channel.RCS else None,
            template=template,
            subject=parent.subject if step.channel is Channel.EMAIL else "",
            html=prepared.html if step.channel is Channel.EMAIL else "",
            template_kind=parent.template_kind,
            segments=prepared.segments,
            encoding=prepared.encoding,
            cost=prepared.cost,
        )
        pipe.set(self._keys.message(attempt), encode(record))
        routing.attempts.append(RouteAttempt(id=attempt, step=index, channel=step.channel, started_at=now))
        routing.next_step = max(routing.next_step, index + 1)
        parent.channel = step.channel
        parent.address = step.address
        parent.segments, parent.encoding, parent.cost = record.segments, record.encoding, record.cost
        parent.body = record.body  # the thread shows what the customer received
        parent.template = template
        job = OutboxJob(
            attempt,
            parent.customer_id,
            step.channel,
            step.address,
            prepared.body,
            rich_card=record.rich_card,
            template=template,
            subject=record.subject,
            html=record.html,
        )
        pipe.xadd(self._keys.outbox(self._shard), {INGEST_FIELD: encode(job)})
        detail = f"step {index + 1} of {len(routing.decision.chain)}"
        if content.template:
            detail += f", template {content.template}"
        self._log(pipe, parent, "attempt", now, step.channel, attempt, detail)
        if routing.decision.mode == "fallback":
            timeout = RoutingTimer(parent.id, parent.customer_id, "timeout", attempt, index)
            timers.schedule(
                pipe, self._keys, self._shard, _timeout_timer(attempt), now + step.timeout, timeout
            )
        campaign = routing.request.campaign_id
        if campaign and routing.request.budget is not None and step.price:
            pipe.hincrbyfloat(self._keys.campaign(campaign), "spent", step.price)
            batch.campaign_spent[campaign] = batch.campaign_spent.get(campaign, 0.0) + step.price

    def _prepared(
        self, parent: MessageRecord, attempt: str, channel: Channel, address: str, body: str
    ) -> OutboundContent:
        """The attempt's content as it will be sent on ``channel`` (tracked links, segments, cost)."""
        if self._prepare is None:
            return OutboundContent(body=body, html=parent.html)
        assert parent.routing is not None
        request = parent.routing.request
        entry = OutboundRequest(
            message_id=attempt,
            recipient=request.recipient,
            body=body,
            message_type=parent.message_type,
            requested_at=parent.created_at,
            channel=channel,
            subject=parent.subject,
            html=parent.html,
            template_kind=parent.template_kind,
            track=request.track,
        )
        return self._prepare(entry, parent.customer_id, channel, parent.routing.decision.country)

    def _whatsapp_template(self, parent: MessageRecord, channel: Channel, name: str) -> TemplateRef | None:
        """The approved template a WhatsApp attempt sends: the caller's own, or the one routing
        chose because the customer is outside the 24-hour window (its one variable: the body)."""
        if channel is not Channel.WHATSAPP:
            return None
        if parent.template is not None:
            return parent.template
        if not name:
            return None
        body = parent.routing.request.body if parent.routing else parent.body
        return TemplateRef(name, self._template_languages.get(name, "en_US"), (body,))

    def _on_success(
        self,
        pipe: Pipeline,
        parent: MessageRecord,
        attempt: RouteAttempt,
        record: MessageRecord,
        change: StatusChange,
    ) -> None:
        assert parent.routing is not None
        routing = parent.routing
        if attempt.outcome == "failed":
            return  # a provider contradicting itself; the failure already moved the chain on
        if attempt.outcome == "timed_out":
            attempt.outcome = "late_success"
            later = [
                a.channel.value
                for a in routing.attempts
                if a.started_at >= attempt.started_at and a is not attempt
            ]
            detail = f"{change.status} after fallback to {', '.join(later)}; no further step"
            self._log(pipe, parent, "late_delivery", change.at, attempt.channel, attempt.id, detail)
        elif attempt.outcome == "pending":
            attempt.outcome = "succeeded"
        if routing.state in ("active", "exhausted"):
            routing.state = "succeeded"
            for other in routing.attempts:  # no fallback after a success, whichever channel had it
                timers.cancel(pipe, self._keys, self._shard, _timeout_timer(other.id))
            self._log(pipe, parent, "succeeded", change.at, attempt.channel, attempt.id, str(change.status))
        self._mirror(parent, record)
        if advances(parent.status, change.status) or parent.status in FAILURES:
            parent.status = change.status
            parent.error_code = ""

    def _on_failure(
        self,
        pipe: Pipeline,
        batch: RoutingBatch,
        parent: MessageRecord,
        attempt: RouteAttempt,
        record: MessageRecord,
        change: StatusChange,
        now: float,
    ) -> None:
        assert parent.routing is not None
        routing = parent.routing
        if attempt.outcome == "failed":
            return  # the same failure reported twice (callback and send outcome)
        attempt.outcome = "failed"
        timers.cancel(pipe, self._keys, self._shard, _timeout_timer(attempt.id))
        rules = self._policy.channel(attempt.channel)
        if change.error_code and change.error_code in rules.unreachable_codes:
            mark_unreachable(pipe, self._keys, parent.customer_id, attempt.channel, change.at)
        others_succeeded = any(a.outcome in SUCCESSFUL for a in routing.attempts if a is not attempt)
        if others_succeeded or routing.state in ("refused", "deferred"):
            return
        code = f" {change.error_code}" if change.error_code else ""
        why = f"{attempt.channel} {change.status}{code}"
        if routing.decision.mode == "fallback":
            if attempt is routing.attempts[-1]:
                self._advance(pipe, batch, parent, now, why, failed=record)
        elif len(routing.attempts) == len(routing.decision.chain) and all(
            a.outcome == "failed" for a in routing.attempts
        ):
            self._exhaust(pipe, parent, now, why, record)

    def _advance(
        self,
        pipe: Pipeline,
        batch: RoutingBatch,
        parent: MessageRecord,
        now: float,
        why: str,
        failed: MessageRecord | None = None,
    ) -> None:
        """Move to the next step of a fallback chain, or end it."""
        assert parent.routing is not None
        routing = parent.routing
        routing.state = "active"
        if routing.next_step < len(routing.decision.chain):
            next_channel = routing.decision.chain[routing.next_step].channel
            self._log(pipe, parent, "fallback", now, next_channel, detail=f"{why} -> {next_channel}")
            self._start_step(pipe, batch, parent, routing.next_step, now)
        else:
            self._exhaust(pipe, parent, now, why, failed)

    def _exhaust(
        self, pipe: Pipeline, parent: MessageRecord, now: float, why: str, failed: MessageRecord | None
    ) -> None:
        assert parent.routing is not None
        parent.routing.state = "exhausted"
        self._log(pipe, parent, "exhausted", now, parent.channel, detail=f"{why}; no step left")
        if failed is not None and parent.status not in (MessageStatus.DELIVERED, MessageStatus.READ):
            self._mirror(parent, failed)
            parent.status = failed.status
            parent.error_code = failed.error_code

    # --- helpers ---------------------------------------------------------------------------

    def _decide(self, request: RouteRequest, context: CustomerContext, now: float) -> RoutingDecision:
        decision = decide(
            request,
            context,
            self._policy,
            self._prices,
            now,
            available=self._channels,
            send_time=self._send_time,
        )
        return decision

    def _context(self, batch: RoutingBatch, customer_id: str) -> CustomerContext:
        context = batch.contexts.get(customer_id)
        if context is None:
            context = batch.contexts[customer_id] = CustomerContext(customer_id=customer_id)
        context.campaign_spent = batch.campaign_spent  # shared: spend in this batch counts at once
        return context

    def _display_channel(self, decision: RoutingDecision, request: RouteRequest) -> Channel:
        """The channel a message shows before any attempt: chosen, else planned, else the type's first."""
        if decision.chosen is not None:
            return decision.chosen
        if decision.chain:
            return decision.chain[0].channel
        if request.channel is not None:
            return request.channel
        return self._policy.rules_for(request.message_type)[1].chain[0]

    @staticmethod
    def _mirror(parent: MessageRecord, attempt: MessageRecord) -> None:
        """The message shows the provider details of the attempt that speaks for it."""
        parent.channel = attempt.channel
        parent.address = attempt.address
        parent.provider = attempt.provider
        parent.provider_message_id = attempt.provider_message_id
        parent.segments = attempt.segments
        parent.encoding = attempt.encoding
        parent.cost = attempt.cost
        parent.price = attempt.price
        parent.error_message = attempt.error_message
        if attempt.fallback_from is not None:  # the adapter re-rendered it for another channel
            parent.fallback_from = attempt.fallback_from
            parent.fallback_reason = attempt.fallback_reason
            parent.body = attempt.body

    def _log(
        self,
        pipe: Pipeline,
        parent: MessageRecord,
        event: str,
        at: float,
        channel: Channel,
        attempt: str = "",
        detail: str = "",
        decision: RoutingDecision | None = None,
    ) -> None:
        logged = RoutingLogged(
            message_id=parent.id,
            channel=channel,
            at=at,
            event=event,
            attempt_id=attempt,
            detail=detail,
            decision=decision,
        )
        pipe.xadd(self._keys.thread(parent.customer_id), {INGEST_FIELD: encode(logged)})

    def _save(self, pipe: Pipeline, record: MessageRecord) -> None:
        pipe.set(self._keys.message(record.id), encode(record))


def _refusal(decision: RoutingDecision) -> tuple[str, str]:
    """The error code and message of a message no channel may carry."""
    if decision.hold is not None:
        return decision.hold.value, f"held by {decision.hold.value}"
    reasons = {skip.reason for skip in decision.skipped}
    message = "; ".join(
        f"{skip.channel}: {skip.reason}" + (f" ({skip.detail})" if skip.detail else "")
        for skip in decision.skipped
    )
    if len(reasons) == 1:
        return next(iter(reasons)).value, message
    return "no_eligible_channel", message or "no channel in the policy"
