"""``decide``: a pure function from a message, its customer and the policy to a RoutingDecision.

No I/O and no clock of its own: the processor passes ``now``, so a decision can be replayed
and tested at any hour. The decision names every channel it left out and why.
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import NamedTuple

import msgspec

from conversations.models import (
    Channel,
    DecisionOutcome,
    IdentifierKind,
    MessageStatus,
    RouteOrder,
    RouteRequest,
    RouteStep,
    RoutingDecision,
    SkippedChannel,
    SkipReason,
)
from conversations.pricing import PriceTable, country_of
from conversations.routing.context import CustomerContext
from conversations.routing.policy import QuietHours, RoutingPolicy, StepRules, TypeRules
from conversations.routing.send_time import SendTimeOptimiser

__all__ = ["RoutingDecision", "decide", "quiet_hours_end"]


def decide(
    request: RouteRequest,
    context: CustomerContext,
    policy: RoutingPolicy,
    prices: PriceTable,
    now: float,
    *,
    available: Collection[Channel] | None = None,
    send_time: SendTimeOptimiser | None = None,
) -> RoutingDecision:
    """Choose the channel chain for ``request``; ``available`` are the channels with a sender."""
    message_type, rules = policy.rules_for(request.message_type)
    country = country_of(_phone_of(request, context), policy.default_country)
    asked = _Asked(request, context, policy, rules, message_type, prices, country, now, available)
    preferred = _preferred(request, context, message_type, rules)
    candidates = [*preferred, *(c for c in rules.chain if c not in preferred)]
    if request.channel is not None:
        candidates = [request.channel]
    steps: list[RouteStep] = []
    skipped: list[SkippedChannel] = []
    for channel in candidates:
        considered = _consider(channel, asked)
        if isinstance(considered, SkippedChannel):
            skipped.append(considered)
        else:
            steps.append(considered)
    if rules.order is RouteOrder.CHEAPEST and request.channel is None:
        steps.sort(key=lambda s: _cost_rank(s, preferred, rules.chain))
    if request.channel is not None:
        fallback = _unreachable_fallback(asked, skipped)
        if isinstance(fallback, SkippedChannel):
            skipped.append(fallback)
        elif fallback is not None:
            steps.append(fallback)

    outcome, hold, deferred_until = DecisionOutcome.SEND, None, None
    if not steps:
        outcome = DecisionOutcome.REFUSE
    else:
        outcome, hold, deferred_until = _gates(rules, message_type, context, policy, steps, now, send_time)
    return RoutingDecision(
        message_type=message_type,
        outcome=outcome,
        chosen=steps[0].channel if outcome is DecisionOutcome.SEND else None,
        chain=tuple(steps),
        skipped=tuple(skipped),
        mode=rules.mode,
        order=RouteOrder.PINNED if request.channel is not None else rules.order,
        hold=hold,
        deferred_until=deferred_until,
        country=country,
        currency=prices.currency,
        decided_at=now,
    )


class _Asked(NamedTuple):
    """What one decision weighs every channel against."""

    request: RouteRequest
    context: CustomerContext
    policy: RoutingPolicy
    rules: TypeRules
    message_type: str
    prices: PriceTable
    country: str
    now: float
    available: Collection[Channel] | None  # the channels with a sender; None: all


def _unreachable_fallback(asked: _Asked, skipped: list[SkippedChannel]) -> RouteStep | SkippedChannel | None:
    """For a pinned channel with an unreachable fallback (RCS -> SMS): the adapted step, taken
    when the provider reports the customer unreachable (or at once when that is already known)."""
    request = asked.request
    assert request.channel is not None
    pinned_rules = asked.policy.channel(request.channel)
    fallback = pinned_rules.unreachable_fallback
    if fallback is None or fallback is request.channel:
        return None
    pinned_skip = next((s for s in skipped if s.channel is request.channel), None)
    if pinned_skip is not None and pinned_skip.reason not in (SkipReason.NOT_CAPABLE, SkipReason.UNREACHABLE):
        return None  # consent, window or price ruled the pinned channel out: no substitute
    considered = _consider(fallback, asked, adapt=True)
    if isinstance(considered, SkippedChannel):
        return considered
    only_after = tuple(pinned_rules.unreachable_codes) if pinned_skip is None else ()
    return msgspec.structs.replace(considered, adapt=True, only_after=only_after)


def _preferred(
    request: RouteRequest, context: CustomerContext, message_type: str, rules: TypeRules
) -> list[Channel]:
    """The customer's own order for this type; it overrides the policy's."""
    order = list(dict.fromkeys(context.preferences.preferred_order(message_type)))
    if not rules.allow_preferred_outside_chain:
        order = [c for c in order if c in rules.chain]
    return order


def _cost_rank(step: RouteStep, preferred: list[Channel], chain: list[Channel]) -> tuple:
    if step.channel in preferred:
        return (0, preferred.index(step.channel), 0.0)
    price = math.inf if step.price is None else step.price
    position = chain.index(step.channel) if step.channel in chain else len(chain)
    return (1, price, position)


def _consider(channel: Channel, asked: _Asked, adapt: bool = False) -> RouteStep | SkippedChannel:
    """One channel: a step of the chain, or the reason it is left out (first reason wins)."""
    request, context, policy, rules, message_type, prices, country, now, available = asked
    channel_rules = policy.channel(channel)
    step_rules = rules.steps.get(channel) or StepRules()
    if not context.preferences.allows(channel, message_type):  # consent first: it is what audits ask
        opt_out = context.preferences.channel_opt_outs.get(channel)
        detail = f"{opt_out.source} at {opt_out.at:.0f}" if opt_out else f"opted out of {message_type}"
        return SkippedChannel(channel, SkipReason.OPTED_OUT, detail)
    if available is not None and channel not in available:
        return SkippedChannel(channel, SkipReason.CHANNEL_UNAVAILABLE, "no sender configured")
    address = context.address_for(channel)
    if address is None:
        return SkippedChannel(channel, SkipReason.UNREACHABLE, "no address known for this channel")
    since = context.unreachable_since.get(channel)
    if since is not None and now - since < channel_rules.unreachable_days * 86400:
        reason = SkipReason.NOT_CAPABLE if channel is Channel.RCS else SkipReason.UNREACHABLE
        return SkippedChannel(channel, reason, "the provider reported it at " + _iso(since))
    if request.media and not channel_rules.rich and not (step_rules.adapt or adapt):
        return SkippedChannel(channel, SkipReason.NOT_CAPABLE, "cannot carry media")
    template = ""
    if channel_rules.window_hours > 0:
        last = context.last_inbound_at.get(channel)
        if last is None or now - last > channel_rules.window_hours * 3600:
            # An approved template named for this message (or its type) comes first; the
            # policy's generic one only stands in for sends routing chose, never for a
            # free-form message the caller pinned to this channel.
            generic = "" if request.channel is channel else channel_rules.template
            name = request.whatsapp_template or (
                step_rules.template if step_rules.template is not None else generic
            )
            if channel_rules.outside_window == "template" and name:
                template = name
            else:
                return SkippedChannel(
                    channel,
                    SkipReason.OUTSIDE_WINDOW,
                    f"no customer message in the {channel_rules.window_hours:g}-hour window;"
                    " a free-form message needs an approved template",
                )
    score = context.engagement.get(channel, 0.0)
    if step_rules.min_engagement > 0 and score < step_rules.min_engagement and request.channel is None:
        return SkippedChannel(
            channel, SkipReason.NOT_ENGAGED, f"engagement {score:.2f} < {step_rules.min_engagement:g}"
        )
    # Estimated on the text as asked; each attempt is priced again on what it really sends.
    price = prices.price(channel, country, message_type, request.body)
    if price is not None:
        if rules.max_price is not None and price > rules.max_price:
            return SkippedChannel(
                channel, SkipReason.TOO_EXPENSIVE, f"{price:.4f} > max_price {rules.max_price:g}"
            )
        if request.budget is not None:
            remaining = request.budget - context.campaign_spent.get(request.campaign_id, 0.0)
            if price > remaining + 1e-9:
                return SkippedChannel(
                    channel, SkipReason.TOO_EXPENSIVE, f"{price:.4f} > campaign budget left {remaining:.4f}"
                )
    return RouteStep(
        channel=channel,
        address=address,
        success=MessageStatus(step_rules.success or channel_rules.success),
        timeout=step_rules.timeout_seconds or channel_rules.timeout_seconds,
        price=price,
        template=template,
        adapt=step_rules.adapt,
        delay=step_rules.delay_seconds,
    )


def _gates(
    rules: TypeRules,
    message_type: str,
    context: CustomerContext,
    policy: RoutingPolicy,
    steps: list[RouteStep],
    now: float,
    send_time: SendTimeOptimiser | None,
) -> tuple[DecisionOutcome, SkipReason | None, float | None]:
    """Type-wide holds, in order: frequency cap, quiet hours, send-time optimisation."""
    cap = rules.frequency_cap
    if cap is not None:
        window = cap.window_seconds
        recent = sorted(t for t in context.recent_sends.get(message_type, ()) if t > now - window)
        if len(recent) >= cap.max:
            if cap.action == "drop":
                return DecisionOutcome.REFUSE, SkipReason.FREQUENCY_CAP, None
            # Deferred until enough of the window's sends have aged out of it.
            return DecisionOutcome.DEFER, SkipReason.FREQUENCY_CAP, recent[len(recent) - cap.max] + window
    if rules.quiet_hours:
        until = quiet_hours_end(policy.quiet_hours, context.timezone or policy.default_timezone, now)
        if until is not None:
            return DecisionOutcome.DEFER, SkipReason.QUIET_HOURS, until
    if rules.optimise_send_time and send_time is not None:
        best = send_time.best_time(context, steps[0].channel, now)
        if best is not None and best > now:
            return DecisionOutcome.DEFER, SkipReason.SEND_TIME, best
    return DecisionOutcome.SEND, None, None


def quiet_hours_end(window: QuietHours, timezone: str, now: float) -> float | None:
    """When quiet hours end if ``now`` is inside them (the next allowed minute), else None."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")  # a bad attribute must not block sends
    local = datetime.fromtimestamp(now, zone)
    at = local.time().replace(tzinfo=None)
    start, end = window.start_time, window.end_time
    wraps = start > end  # e.g. 21:00-08:00
    inside = (at >= start or at < end) if wraps else (start <= at < end)
    if not inside:
        return None
    day = local.date() + timedelta(days=1) if wraps and at >= start else local.date()
    return datetime.combine(day, end, tzinfo=zone).timestamp()


def _phone_of(request: RouteRequest, context: CustomerContext) -> str | None:
    if request.recipient.kind is IdentifierKind.PHONE:
        return request.recipient.value
    return context.address_for(Channel.SMS)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, zoneinfo.ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")
