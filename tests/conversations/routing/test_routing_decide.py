"""``decide()`` as a pure function: the default mapping, and everything that changes it."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from conversations.models import (
    Channel,
    DecisionOutcome,
    Identifier,
    IdentifierKind,
    Media,
    MessageStatus,
    RouteRequest,
    RoutingDecision,
    SkipReason,
)
from conversations.preferences import ConsentChange, ConsentState, Preferences, TypePreference
from conversations.pricing import DEFAULT_PRICES, PriceTable, Rate
from conversations.routing.context import CustomerContext
from conversations.routing.decide import decide, quiet_hours_end
from conversations.routing.policy import DEFAULT_POLICY_PATH, QuietHours, load_policy, parse_policy

POLICY = load_policy()
PHONE = Identifier(IdentifierKind.PHONE, "+14155550100")
EMAIL = Identifier(IdentifierKind.EMAIL, "ada@example.com")
NOON_UTC = datetime(2025, 3, 12, 12, 0, tzinfo=UTC).timestamp()
ALL = frozenset(Channel)


def _context(**changes) -> CustomerContext:
    """A customer reachable everywhere, who wrote on WhatsApp an hour ago and replies there."""
    context = CustomerContext(
        customer_id="cus_0_TEST",
        identifiers=[EMAIL, PHONE],
        last_inbound_at={Channel.WHATSAPP: NOON_UTC - 3600},
        engagement={Channel.WHATSAPP: 2.0},
    )
    for name, value in changes.items():
        setattr(context, name, value)
    return context


def _request(message_type: str, body: str = "Your code is 123456", **changes) -> RouteRequest:
    changes.setdefault("recipient", PHONE)
    return RouteRequest(message_id="msg_T", message_type=message_type, body=body, **changes)


def _decide(message_type: str, context: CustomerContext | None = None, **kwargs) -> RoutingDecision:
    request = kwargs.pop("request", None) or _request(message_type)
    return decide(
        request,
        context or _context(),
        kwargs.pop("policy", POLICY),
        kwargs.pop("prices", DEFAULT_PRICES),
        kwargs.pop("now", NOON_UTC),
        available=kwargs.pop("available", ALL),
    )


def _chain(decision: RoutingDecision) -> list[Channel]:
    return [step.channel for step in decision.chain]


def _skipped(decision: RoutingDecision) -> dict[Channel, SkipReason]:
    return {skip.channel: skip.reason for skip in decision.skipped}


@pytest.mark.parametrize(
    ("message_type", "chosen", "chain"),
    [
        ("transactional", Channel.SMS, [Channel.SMS, Channel.VOICE]),
        ("service", Channel.WHATSAPP, [Channel.WHATSAPP, Channel.SMS]),
        ("rich_media", Channel.RCS, [Channel.RCS, Channel.WHATSAPP, Channel.SMS]),
        ("urgent", Channel.VOICE, [Channel.VOICE, Channel.SMS]),
        ("marketing", Channel.EMAIL, [Channel.EMAIL, Channel.WHATSAPP]),
    ],
)
def test_each_default_mapping_picks_the_expected_channel(
    message_type: str, chosen: Channel, chain: list[Channel]
) -> None:
    decision = _decide(message_type)
    assert decision.outcome is DecisionOutcome.SEND
    assert decision.chosen is chosen
    assert _chain(decision) == chain
    assert decision.skipped == ()
    assert decision.country == "US" and decision.currency == "USD"


def test_steps_carry_the_success_condition_and_timeout() -> None:
    steps = {step.channel: step for step in _decide("service").chain}
    assert (steps[Channel.WHATSAPP].success, steps[Channel.WHATSAPP].timeout) == (MessageStatus.DELIVERED, 60)
    assert (steps[Channel.SMS].success, steps[Channel.SMS].timeout) == (MessageStatus.SENT, 30)
    assert steps[Channel.SMS].address == PHONE.value
    assert _decide("urgent").mode == "all"  # voice and the SMS follow-up are both sent
    assert _decide("transactional").mode == "fallback"


def test_marketing_uses_whatsapp_only_for_engaged_customers() -> None:
    decision = _decide("marketing", _context(engagement={Channel.WHATSAPP: 0.2}))
    assert _chain(decision) == [Channel.EMAIL]
    assert _skipped(decision) == {Channel.WHATSAPP: SkipReason.NOT_ENGAGED}
    no_email = _decide("marketing", _context(identifiers=[PHONE]))
    assert no_email.chosen is Channel.WHATSAPP
    assert _skipped(no_email) == {Channel.EMAIL: SkipReason.UNREACHABLE}
    # Business-initiated marketing outside the session window goes as the configured template.
    late = _decide("marketing", _context(identifiers=[PHONE], last_inbound_at={}))
    assert late.chain[0].template == "threadline_offer"


def test_customer_preferences_override_the_default_order() -> None:
    prefs = Preferences(by_type={"transactional": TypePreference(order=(Channel.WHATSAPP, Channel.VOICE))})
    decision = _decide("transactional", _context(preferences=prefs))
    assert decision.chosen is Channel.WHATSAPP
    assert _chain(decision) == [Channel.WHATSAPP, Channel.VOICE, Channel.SMS]


def test_preferences_beat_cheapest_first() -> None:
    prefs = Preferences(by_type={"service": TypePreference(order=(Channel.SMS,))})
    assert _chain(_decide("service", _context(preferences=prefs))) == [Channel.SMS, Channel.WHATSAPP]


def test_opt_outs_remove_channels() -> None:
    prefs = Preferences(by_type={"service": TypePreference(opted_out=(Channel.WHATSAPP,))})
    decision = _decide("service", _context(preferences=prefs))
    assert decision.chosen is Channel.SMS
    assert _skipped(decision) == {Channel.WHATSAPP: SkipReason.OPTED_OUT}


def test_a_channel_wide_stop_refuses_service_but_not_transactional() -> None:
    prefs = Preferences()
    prefs.apply(ConsentChange(Channel.SMS, ConsentState.OPTED_OUT, "sms_keyword:STOP", NOON_UTC - 60))
    context = _context(preferences=prefs, identifiers=[PHONE])
    service = _decide("service", context, available={Channel.SMS})
    assert service.outcome is DecisionOutcome.REFUSE and service.chosen is None
    assert _skipped(service) == {
        Channel.WHATSAPP: SkipReason.CHANNEL_UNAVAILABLE,
        Channel.SMS: SkipReason.OPTED_OUT,
    }
    assert _decide("transactional", context).chosen is Channel.SMS  # exempt, as Preferences says


def test_unreachable_and_not_capable_channels_are_skipped() -> None:
    learned = {Channel.RCS: NOON_UTC - 86400, Channel.WHATSAPP: NOON_UTC - 86400}
    decision = _decide("rich_media", _context(unreachable_since=learned))
    assert decision.chosen is Channel.SMS
    assert _skipped(decision) == {
        Channel.RCS: SkipReason.NOT_CAPABLE,
        Channel.WHATSAPP: SkipReason.UNREACHABLE,
    }
    forgotten = {Channel.RCS: NOON_UTC - 40 * 86400}  # a learned "no" expires (30 days by default)
    assert _decide("rich_media", _context(unreachable_since=forgotten)).chosen is Channel.RCS


def test_media_needs_a_rich_channel_or_adaptation() -> None:
    request = _request("transactional", media=(Media("https://example.com/a.png", "image/png"),))
    decision = _decide("transactional", request=request)
    assert decision.outcome is DecisionOutcome.REFUSE
    assert _skipped(decision) == {Channel.SMS: SkipReason.NOT_CAPABLE, Channel.VOICE: SkipReason.NOT_CAPABLE}
    rich = _decide("rich_media", request=_request("rich_media", media=request.media))
    assert _chain(rich) == [Channel.RCS, Channel.WHATSAPP, Channel.SMS]  # SMS adapts
    assert rich.chain[2].adapt


def test_whatsapp_outside_the_window_becomes_the_template_or_is_skipped() -> None:
    stale = _context(last_inbound_at={Channel.WHATSAPP: NOON_UTC - 25 * 3600})
    decision = _decide("service", stale)
    assert decision.chosen is Channel.WHATSAPP and decision.chain[0].template == "threadline_update"
    inside = _decide("service")
    assert inside.chain[0].template == ""
    skip_policy = parse_policy(
        DEFAULT_POLICY_PATH.read_text().replace('outside_window = "template"', 'outside_window = "skip"')
    )
    skipped = _decide("service", stale, policy=skip_policy)
    assert skipped.chosen is Channel.SMS
    assert _skipped(skipped) == {Channel.WHATSAPP: SkipReason.OUTSIDE_WINDOW}


def test_channels_without_a_sender_are_skipped_as_unavailable() -> None:
    decision = _decide("transactional", available={Channel.SMS})
    assert _chain(decision) == [Channel.SMS]
    assert _skipped(decision) == {Channel.VOICE: SkipReason.CHANNEL_UNAVAILABLE}


def test_cheapest_first_follows_the_price_table() -> None:
    whatsapp_cheap = PriceTable("USD", {Channel.SMS: Rate(0.05), Channel.WHATSAPP: Rate(0.01)})
    sms_cheap = PriceTable("USD", {Channel.SMS: Rate(0.05, {"US": 0.004}), Channel.WHATSAPP: Rate(0.01)})
    assert _decide("service", prices=whatsapp_cheap).chosen is Channel.WHATSAPP
    decision = _decide("service", prices=sms_cheap)
    assert _chain(decision) == [Channel.SMS, Channel.WHATSAPP]
    assert [step.price for step in decision.chain] == [0.004, 0.01]
    # SMS is priced per segment: a long Unicode text costs several segments and loses.
    long_body = "Ваш заказ отправлен. " * 8
    long_sms = _decide("service", prices=sms_cheap, request=_request("service", body=long_body))
    assert long_sms.chosen is Channel.WHATSAPP
    # A pinned order ignores prices.
    assert (
        _decide(
            "transactional", prices=PriceTable("USD", {Channel.SMS: Rate(9), Channel.VOICE: Rate(0.001)})
        ).chosen
        is Channel.SMS
    )


def test_destination_country_picks_the_rate() -> None:
    request = _request("transactional", recipient=Identifier(IdentifierKind.PHONE, "+447400123456"))
    decision = _decide("transactional", request=request)
    assert decision.country == "GB"
    assert decision.chain[0].price == DEFAULT_PRICES.rates[Channel.SMS].by_country["GB"]


def test_budget_and_max_price_make_channels_too_expensive() -> None:
    request = _request("service", campaign_id="spring", budget=0.010)
    spent = _context(campaign_spent={"spring": 0.005})
    decision = _decide("service", spent, request=request)  # WhatsApp 0.004 fits, SMS 0.0079 does not
    assert _chain(decision) == [Channel.WHATSAPP]
    assert _skipped(decision) == {Channel.SMS: SkipReason.TOO_EXPENSIVE}
    capped = parse_policy(
        DEFAULT_POLICY_PATH.read_text().replace(
            'chain = ["rcs", "whatsapp", "sms"]', 'chain = ["rcs", "whatsapp", "sms"]\nmax_price = 0.005'
        )
    )
    assert capped.types["rich_media"].max_price == 0.005
    rich = _decide("rich_media", policy=capped)
    assert _skipped(rich) == {Channel.RCS: SkipReason.TOO_EXPENSIVE, Channel.SMS: SkipReason.TOO_EXPENSIVE}


def test_quiet_hours_defer_marketing_to_the_next_allowed_minute() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    late_evening = datetime(2025, 3, 12, 22, 30, tzinfo=tokyo).timestamp()
    decision = _decide("marketing", _context(timezone="Asia/Tokyo"), now=late_evening)
    assert decision.outcome is DecisionOutcome.DEFER and decision.chosen is None
    assert decision.hold is SkipReason.QUIET_HOURS
    assert decision.deferred_until == datetime(2025, 3, 13, 8, 0, tzinfo=tokyo).timestamp()
    assert _chain(decision) == [Channel.EMAIL, Channel.WHATSAPP]  # what will be tried at 08:00
    # Transactional and urgent are exempt; the same instant is daytime for a UTC customer.
    assert _decide("transactional", _context(timezone="Asia/Tokyo"), now=late_evening).chosen is Channel.SMS
    assert _decide("urgent", _context(timezone="Asia/Tokyo"), now=late_evening).chosen is Channel.VOICE
    assert _decide("marketing", _context(), now=late_evening).chosen is Channel.EMAIL
    # At 08:00 local it sends.
    assert (
        _decide("marketing", _context(timezone="Asia/Tokyo"), now=decision.deferred_until).chosen
        is Channel.EMAIL
    )


def test_quiet_hours_windows() -> None:
    window = QuietHours("21:00", "08:00")
    ny = ZoneInfo("America/New_York")
    after_midnight = datetime(2025, 3, 12, 2, 15, tzinfo=ny).timestamp()
    assert (
        quiet_hours_end(window, "America/New_York", after_midnight)
        == datetime(2025, 3, 12, 8, 0, tzinfo=ny).timestamp()
    )
    assert (
        quiet_hours_end(window, "America/New_York", datetime(2025, 3, 12, 8, 0, tzinfo=ny).timestamp())
        is None
    )
    assert (
        quiet_hours_end(window, "America/New_York", datetime(2025, 3, 12, 20, 59, tzinfo=ny).timestamp())
        is None
    )
    lunch = QuietHours("12:00", "13:30")  # a window that does not wrap midnight
    at = datetime(2025, 3, 12, 12, 10, tzinfo=UTC).timestamp()
    assert quiet_hours_end(lunch, "UTC", at) == datetime(2025, 3, 12, 13, 30, tzinfo=UTC).timestamp()
    assert quiet_hours_end(window, "Not/AZone", NOON_UTC) is None  # bad attribute: treated as UTC


def test_frequency_cap_stops_the_fourth_marketing_message() -> None:
    sends = [NOON_UTC - 6 * 86400, NOON_UTC - 2 * 86400, NOON_UTC - 3600]
    assert _decide("marketing", _context(recent_sends={"marketing": sends[:2]})).chosen is Channel.EMAIL
    capped = _decide("marketing", _context(recent_sends={"marketing": sends}))
    assert capped.outcome is DecisionOutcome.REFUSE and capped.hold is SkipReason.FREQUENCY_CAP
    old = [NOON_UTC - 8 * 86400, *sends[1:]]  # one send fell out of the 7-day window
    assert _decide("marketing", _context(recent_sends={"marketing": old})).chosen is Channel.EMAIL
    deferring = parse_policy(DEFAULT_POLICY_PATH.read_text().replace('action = "drop"', 'action = "defer"'))
    deferred = _decide("marketing", _context(recent_sends={"marketing": sends}), policy=deferring)
    assert deferred.outcome is DecisionOutcome.DEFER
    assert deferred.deferred_until == sends[0] + 7 * 86400  # when the oldest send leaves the window


def test_a_pinned_channel_is_the_whole_chain() -> None:
    decision = _decide("service", request=_request("service", channel=Channel.SMS))
    assert _chain(decision) == [Channel.SMS] and decision.order == "pinned"


def test_decision_round_trips_as_json() -> None:
    decision = _decide(
        "service",
        _context(preferences=Preferences(by_type={"service": TypePreference(opted_out=(Channel.WHATSAPP,))})),
    )
    data = msgspec.json.decode(msgspec.json.encode(decision))
    assert data["chosen"] == "sms"
    assert data["skipped"] == [
        {"channel": "whatsapp", "reason": "opted_out", "detail": "opted out of service"}
    ]
    assert msgspec.json.decode(msgspec.json.encode(decision), type=RoutingDecision) == decision
