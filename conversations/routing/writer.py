"""Carries out the routing machine's effects inside a batch: attempt records, outbox jobs,
timers, thread lines and the message's status. Decides nothing (``machine`` did)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from redis.asyncio.client import Pipeline

from conversations import stream_entries, timers
from conversations.batch.context import BatchContext
from conversations.models import (
    Channel,
    Direction,
    MessageRecord,
    MessageStatus,
    OutboundContent,
    OutboxJob,
    RoutingLogged,
    RoutingTimer,
    StatusChange,
    TemplateRef,
)
from conversations.routing.context import CustomerContext, record_send
from conversations.routing.machine import (
    CancelRoutingTimer,
    CountSend,
    Effect,
    Log,
    MarkUnreachable,
    Mirror,
    ScheduleRoutingTimer,
    SetStatus,
    StartAttempt,
    timer_id,
)
from conversations.routing.rendering import AttemptContent

# Renders one attempt's content for its channel (template, card adaptation, tracked links,
# segments, cost); the shard gives the channels' renderer (``channels.attempt_renderer``).
RenderAttempt = Callable[[AttemptContent, str, Channel], OutboundContent]


class RoutingWriter:
    """Writes one message's routing effects into the batch (the message record is ``parent``)."""

    def __init__(
        self,
        render: RenderAttempt | None,
        template_languages: Mapping[str, str],
        cap_window: Callable[[str], float | None],
    ) -> None:
        self._render = render
        self._template_languages = template_languages
        self._cap_window = cap_window

    def carry_out(
        self,
        effects: list[Effect],
        parent: MessageRecord,
        ctx: BatchContext,
        tx: Pipeline,
        context: CustomerContext | None,
        campaign_spent: dict[str, float],
    ) -> None:
        for effect in effects:
            if isinstance(effect, StartAttempt):
                self._start(effect, parent, ctx, tx)
                request = parent.routing.request if parent.routing else None
                if request and request.campaign_id and request.budget is not None and effect.step.price:
                    tx.hincrbyfloat(ctx.keys.campaign(request.campaign_id), "spent", effect.step.price)
                    spent = campaign_spent.get(request.campaign_id, 0.0)
                    campaign_spent[request.campaign_id] = spent + effect.step.price
            elif isinstance(effect, Log):
                logged = RoutingLogged(
                    message_id=parent.id,
                    channel=effect.channel or parent.channel,
                    at=effect.at,
                    event=effect.event,
                    attempt_id=effect.attempt_id,
                    detail=effect.detail,
                    decision=effect.decision,
                )
                ctx.log(parent.customer_id, logged)
            elif isinstance(effect, ScheduleRoutingTimer):
                detail = effect.attempt_id or str(effect.step)
                fire = RoutingTimer(
                    parent.id, parent.customer_id, effect.kind, effect.attempt_id, effect.step
                )
                timers.schedule(
                    tx, ctx.keys, ctx.shard, timer_id(parent.id, effect.kind, detail), effect.due, fire
                )
            elif isinstance(effect, CancelRoutingTimer):
                timers.cancel(tx, ctx.keys, ctx.shard, timer_id(parent.id, effect.kind, effect.attempt_id))
            elif isinstance(effect, SetStatus):
                parent.status = effect.status
                if effect.error_code is not None:
                    parent.error_code = effect.error_code
                if effect.error_message is not None:
                    parent.error_message = effect.error_message
                if effect.history:
                    parent.history.append(StatusChange(effect.status, ctx.now, "", effect.error_code or ""))
            elif isinstance(effect, Mirror):
                attempt = ctx.records.get(effect.attempt_id)
                if attempt is not None:
                    _mirror(parent, attempt)
            elif isinstance(effect, MarkUnreachable):
                ctx.customer_writes.unreachable(parent.customer_id, effect.channel, effect.at)
                ctx.facts(parent.customer_id).unreachable_since[effect.channel] = effect.at
            elif isinstance(effect, CountSend):
                window = self._cap_window(parent.message_type)
                if window is not None:
                    record_send(
                        tx, ctx.keys, parent.customer_id, parent.message_type, parent.id, ctx.now, window
                    )
                    if context is not None:
                        context.count_send(parent.message_type, ctx.now)
        ctx.save(parent)

    def _start(self, effect: StartAttempt, parent: MessageRecord, ctx: BatchContext, tx: Pipeline) -> None:
        """The attempt's record and outbox job, rendered for its own channel."""
        attempt, step = effect.attempt, effect.step
        assert parent.routing is not None
        request = parent.routing.request
        content = AttemptContent(
            message_id=attempt.id,
            recipient=request.recipient,
            message_type=parent.message_type,
            body=request.body,
            requested_at=parent.created_at,
            country=parent.routing.decision.country,
            subject=parent.subject,
            html=parent.html,
            template_kind=request.template_kind,
            variables=request.variables,
            rich_card=parent.rich_card,
            adapt=step.adapt,
            track=request.track,
        )
        if self._render is None:
            prepared = OutboundContent(body=request.body, html=parent.html)
        else:
            prepared = self._render(content, parent.customer_id, step.channel)
        template = self._whatsapp_template(parent, step.channel, step.template)
        record = MessageRecord(
            id=attempt.id,
            customer_id=parent.customer_id,
            channel=step.channel,
            direction=Direction.OUTBOUND,
            body=prepared.body,
            status=MessageStatus.ACCEPTED,
            created_at=ctx.now,
            updated_at=ctx.now,
            message_type=parent.message_type,
            address=step.address,
            history=[StatusChange(MessageStatus.ACCEPTED, ctx.now)],
            parent_id=parent.id,
            rich_card=parent.rich_card if step.channel is Channel.RCS else None,
            template=template,
            subject=prepared.subject or parent.subject if step.channel is Channel.EMAIL else "",
            html=prepared.html if step.channel is Channel.EMAIL else "",
            template_kind=parent.template_kind,
            segments=prepared.segments,
            encoding=prepared.encoding,
            cost=prepared.cost,
        )
        origin = effect.after or (request.channel if request.channel is not step.channel else None)
        if step.adapt and origin is not None:
            # Content made for another channel, adapted for this one: the record says so.
            record.fallback_from = origin
            record.fallback_reason = effect.after_reason or "not_capable"
        ctx.save(record)
        parent.channel = step.channel
        parent.address = step.address
        parent.segments, parent.encoding, parent.cost = record.segments, record.encoding, record.cost
        parent.body = record.body  # the thread shows what the customer received
        parent.template = template
        job = OutboxJob(
            attempt.id,
            parent.customer_id,
            step.channel,
            step.address,
            prepared.body,
            rich_card=record.rich_card,
            template=template,
            subject=record.subject,
            html=record.html,
            opt_out_url=prepared.opt_out_url,
        )
        stream_entries.append(tx, ctx.keys.outbox(ctx.shard), job)

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
    if attempt.fallback_from is not None:  # the content was adapted for another channel
        parent.fallback_from = attempt.fallback_from
        parent.fallback_reason = attempt.fallback_reason
        parent.body = attempt.body
