"""Routing in a batch: decide each new message's channel chain and walk it on every report.

The decisions are pure (``routing.decide`` picks the chain, ``routing.machine`` walks it); this
participant gathers their inputs from the batch and hands their effects to ``routing.writer``.
Each attempt is its own message record (``<message id>-<n>``, ``parent_id`` naming the message)
and its own outbox job, so provider ids, statuses and the sender's never-twice marker are per
attempt. The message record carries the ``Routing`` state: the request, the decision, the attempts.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from redis.asyncio.client import Pipeline

from conversations.batch.context import BatchContext, BatchItem, ReadQueue
from conversations.config import WhatsAppTemplate
from conversations.models import (
    Direction,
    MessageLogged,
    MessageRecord,
    MessageStatus,
    OutboundRequest,
    RouteRequest,
    Routing,
    RoutingDecision,
    RoutingState,
    RoutingTimer,
    RoutingTimerKind,
    SendOutcome,
    ShardEntry,
    SkipReason,
    StatusChange,
    StatusUpdate,
)
from conversations.pricing import DEFAULT_PRICES, PriceTable
from conversations.routing import machine
from conversations.routing.context import CustomerContext, capped_types, context_from
from conversations.routing.decide import decide
from conversations.routing.policy import RoutingPolicy, load_policy
from conversations.routing.send_time import SendTimeOptimiser
from conversations.routing.writer import RenderAttempt, RoutingWriter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RoutingSettings:
    """How a shard routes: its policy, prices, the channels it has senders for, its renderer."""

    policy: RoutingPolicy = field(default_factory=load_policy)
    prices: PriceTable = DEFAULT_PRICES
    channels: Collection | None = None  # None: every channel
    send_time: SendTimeOptimiser | None = None
    render: RenderAttempt | None = None
    whatsapp_templates: Mapping[str, WhatsAppTemplate] = field(default_factory=dict)


@dataclass(slots=True)
class _Reads:
    """What this batch read for routing, per customer."""

    engagement: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    recent_sends: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    campaign_spent: dict[str, float] = field(default_factory=dict)
    contexts: dict[str, CustomerContext] = field(default_factory=dict)


class Router:
    """The routing participant of one shard."""

    def __init__(self, settings: RoutingSettings | None = None) -> None:
        settings = settings or RoutingSettings()
        self._policy = settings.policy
        self._prices = settings.prices
        self._channels = frozenset(settings.channels) if settings.channels is not None else None
        self._send_time = settings.send_time
        # The deployment's approved WhatsApp template per message type (config whatsapp.templates)
        # stands in for the policy's default one outside the 24-hour window.
        templates = settings.whatsapp_templates
        self._wa_template_by_type = {t: tpl.name for t, tpl in templates.items()}
        self._capped = capped_types(self._policy)
        windows = dict(self._capped)
        self._writer = RoutingWriter(
            settings.render,
            {t.name: t.language for t in templates.values()},
            lambda message_type: windows.get(self._policy.rules_for(message_type)[0]),
        )
        self._reads = _Reads()

    # --- read ---------------------------------------------------------------------------

    def read(self, ctx: BatchContext, reads: ReadQueue) -> None:
        self._reads = state = _Reads()
        customers: set[str] = set()
        campaigns: set[str] = set()
        for item in ctx.items:
            entry = item.entry
            if not item.home:
                continue
            if isinstance(entry, OutboundRequest):
                customers.add(item.customer_id)
                if entry.campaign_id and entry.budget is not None:
                    campaigns.add(entry.campaign_id)
            elif isinstance(entry, RoutingTimer) and entry.kind is RoutingTimerKind.DEFERRED:
                customers.add(item.customer_id)
                parent = ctx.records.get(entry.message_id)
                request = parent.routing.request if parent and parent.routing else None
                if request and request.campaign_id and request.budget is not None:
                    campaigns.add(request.campaign_id)
        for item in ctx.items:  # a failure or a timeout may move a chain on: consent is re-checked
            if item.home and _may_fall_back(item.entry):
                ctx.read_preferences(item.customer_id, reads)
        for customer_id in sorted(customers):
            ctx.read_preferences(customer_id, reads)

            def keep_engagement(fields: dict[bytes, bytes], cid: str = customer_id) -> None:
                state.engagement[cid] = fields

            reads.then(keep_engagement).hgetall(ctx.keys.engagement(customer_id))
            for message_type, window in self._capped:

                def keep_sends(sends: list, cid: str = customer_id, kind: str = message_type) -> None:
                    state.recent_sends.setdefault(cid, {})[kind] = [float(score) for _, score in sends]

                key = ctx.keys.recent_sends(customer_id, message_type)
                reads.then(keep_sends).zrangebyscore(key, ctx.now - window, "+inf", withscores=True)
        for campaign in sorted(campaigns):

            def keep_spent(spent: bytes | None, name: str = campaign) -> None:
                state.campaign_spent[name] = float(spent or 0)

            reads.then(keep_spent).hget(ctx.keys.campaign(campaign), "spent")

    # --- apply --------------------------------------------------------------------------

    def apply(self, item: BatchItem, ctx: BatchContext, tx: Pipeline) -> None:
        entry = item.entry
        if isinstance(entry, OutboundRequest):
            self._request(item, entry, ctx, tx)
        elif isinstance(entry, StatusUpdate | SendOutcome):
            if item.record is not None and item.change is not None and item.record.parent_id:
                self._attempt_changed(item.record, item.change, ctx, tx)
        elif isinstance(entry, RoutingTimer):
            self._timer(entry, ctx, tx)

    def flush(self, ctx: BatchContext, tx: Pipeline) -> None:
        self._reads = _Reads()

    def _request(self, item: BatchItem, entry: OutboundRequest, ctx: BatchContext, tx: Pipeline) -> None:
        """A new outbound message: decide, record, and start the first step (or defer/refuse)."""
        customer_id = item.customer_id
        context = self._context(ctx, customer_id)
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
            template_kind=entry.template_kind,
            variables=dict(entry.variables),
        )
        decision = self._decide(request, context, ctx.now)
        parent = MessageRecord(
            id=entry.message_id,
            customer_id=customer_id,
            channel=self._display_channel(decision, request),
            direction=Direction.OUTBOUND,
            body=entry.body,
            status=MessageStatus.ACCEPTED,
            created_at=entry.requested_at,
            updated_at=ctx.now,
            message_type=entry.message_type,
            address=entry.recipient.value,
            history=[StatusChange(MessageStatus.ACCEPTED, ctx.now)],
            routing=Routing(request=request, decision=decision),
            rich_card=entry.rich_card,
            template=entry.template,
            subject=entry.subject,
            html=entry.html,
            template_kind=entry.template_kind,
        )
        ctx.records[parent.id] = parent
        logged = MessageLogged(
            parent.id, parent.channel, Direction.OUTBOUND, entry.requested_at, item.session_id
        )
        ctx.log(customer_id, logged)
        self._run(parent, machine.Decided(decision, self._is_capped(decision)), ctx, tx, context)
        ctx.customer_writes.touch(customer_id, ctx.now, entry.recipient)
        ctx.result.outbound.add(customer_id)
        assert parent.routing is not None
        if parent.routing.state is RoutingState.REFUSED:
            item.refused = True
        else:
            ctx.result.sends_queued += 1

    def _attempt_changed(
        self, record: MessageRecord, change: StatusChange, ctx: BatchContext, tx: Pipeline
    ) -> None:
        """An attempt's status changed: succeed, fall back, or mirror it on the message."""
        parent = ctx.records.get(record.parent_id or "")
        if parent is None or parent.routing is None:
            log.warning("attempt %s: its message %s is unknown", record.id, record.parent_id)
            return
        if not any(a.id == record.id for a in parent.routing.attempts):
            return
        parent.history.append(change)
        parent.updated_at = max(parent.updated_at, change.at)
        unreachable = (
            bool(change.error_code)
            and change.error_code in self._policy.channel(record.channel).unreachable_codes
        )
        blocked = self._blocked(parent, ctx) if change.status in machine.FAILURES else {}
        stimulus = machine.AttemptChanged(
            record.id, change, record.status, record.error_code, unreachable, blocked
        )
        self._run(parent, stimulus, ctx, tx, None)

    def _timer(self, entry: RoutingTimer, ctx: BatchContext, tx: Pipeline) -> None:
        """A routing timer came due; stale ones (already answered by a status) change nothing."""
        parent = ctx.records.get(entry.message_id)
        if parent is None or parent.routing is None:
            log.warning("routing timer for unknown message %s", entry.message_id)
            return
        routing = parent.routing
        context = None
        stimulus: machine.Stimulus
        if entry.kind is RoutingTimerKind.DEFERRED:
            if routing.state is not RoutingState.DEFERRED:
                return
            context = self._context(ctx, parent.customer_id)
            context.know(routing.request.recipient)
            decision = self._decide(routing.request, context, ctx.now)
            stimulus = machine.Decided(decision, self._is_capped(decision))
        elif entry.kind is RoutingTimerKind.TIMEOUT:
            stimulus = machine.AttemptTimedOut(entry.attempt_id, self._blocked(parent, ctx))
        else:
            stimulus = machine.FollowUpDue(entry.step)
        self._run(parent, stimulus, ctx, tx, context)

    # --- helpers ------------------------------------------------------------------------

    def _run(
        self,
        parent: MessageRecord,
        stimulus: machine.Stimulus,
        ctx: BatchContext,
        tx: Pipeline,
        context: CustomerContext | None,
    ) -> None:
        assert parent.routing is not None
        effects = machine.step(parent.routing, parent.status, stimulus, ctx.now)
        self._writer.carry_out(effects, parent, ctx, tx, context, self._reads.campaign_spent)

    def _blocked(self, parent: MessageRecord, ctx: BatchContext) -> dict[int, str]:
        """The chain's later steps that consent no longer allows (the customer opted out since)."""
        assert parent.routing is not None
        preferences = ctx.preferences.get(parent.customer_id)
        if preferences is None:
            return {}
        routing = parent.routing
        message_type = routing.decision.message_type
        blocked = {}
        for index, planned in enumerate(routing.decision.chain):
            if index >= routing.next_step and not preferences.allows(planned.channel, message_type):
                opt_out = preferences.channel_opt_outs.get(planned.channel)
                source = f" ({opt_out.source})" if opt_out else ""
                blocked[index] = f"{SkipReason.OPTED_OUT}{source}"
        return blocked

    def _decide(self, request: RouteRequest, context: CustomerContext, now: float) -> RoutingDecision:
        return decide(
            request,
            context,
            self._policy,
            self._prices,
            now,
            available=self._channels,
            send_time=self._send_time,
        )

    def _is_capped(self, decision: RoutingDecision) -> bool:
        return self._policy.rules_for(decision.message_type)[1].frequency_cap is not None

    def _context(self, ctx: BatchContext, customer_id: str) -> CustomerContext:
        """The customer's routing context, kept for the batch; consent and windows stay current."""
        state = self._reads
        context = state.contexts.get(customer_id)
        if context is None:
            context = context_from(
                ctx.facts(customer_id),
                ctx.preferences.get(customer_id),
                state.engagement.get(customer_id),
                state.recent_sends.get(customer_id, {}),
                state.campaign_spent,
                ctx.now,
            )
            state.contexts[customer_id] = context
        else:
            facts = ctx.facts(customer_id)
            context.last_inbound_at.update(facts.last_inbound_at)
            context.unreachable_since.update(facts.unreachable_since)
            if customer_id in ctx.preferences:
                context.preferences = ctx.preferences[customer_id]
        return context

    def _display_channel(self, decision: RoutingDecision, request: RouteRequest):
        """The channel a message shows before any attempt: chosen, else planned, else the type's first."""
        if decision.chosen is not None:
            return decision.chosen
        if decision.chain:
            return decision.chain[0].channel
        if request.channel is not None:
            return request.channel
        return self._policy.rules_for(request.message_type)[1].chain[0]


def _may_fall_back(entry: ShardEntry) -> bool:
    """Whether applying ``entry`` may start a chain's next step."""
    if isinstance(entry, StatusUpdate | SendOutcome):
        return entry.status in machine.FAILURES
    return isinstance(entry, RoutingTimer) and entry.kind is RoutingTimerKind.TIMEOUT
