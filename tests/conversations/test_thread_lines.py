"""One-line summaries of routing, event and engagement entries, from what the routing machine logs."""

from __future__ import annotations

from conversations.models import (
    Channel,
    EngagementKind,
    MessageStatus,
    Routing,
    RoutingEvent,
)
from conversations.routing.machine import AttemptTimedOut, Decided, Log, step
from conversations.thread_lines import engagement_line, event_line, routing_line
from tests.conversations.routing.test_routing_machine import (
    NOW,
    REQUEST,
    _decision,
    _failed,
    _reached,
    _step,
)


def _lines(effects: list) -> list[str]:
    return [routing_line(e.event, e.channel, e.detail, e.decision) for e in effects if isinstance(e, Log)]


def _service_routing() -> tuple[Routing, list[str]]:
    routing = Routing(request=REQUEST, decision=_decision(_step(Channel.WHATSAPP), _step(Channel.SMS)))
    return routing, _lines(step(routing, MessageStatus.ACCEPTED, Decided(routing.decision), NOW))


def test_a_decision_and_its_first_attempt() -> None:
    _, lines = _service_routing()
    assert lines == ["Routing: WhatsApp → SMS", "Sending on WhatsApp (step 1 of 2)"]


def test_a_timeout_and_the_fallback_it_causes() -> None:
    routing, _ = _service_routing()
    lines = _lines(step(routing, MessageStatus.SENT, AttemptTimedOut("msg_1-1"), NOW + 60))
    assert lines == [
        "WhatsApp not delivered within 60 s",
        "WhatsApp not delivered within 60 s → SMS",
        "Sending on SMS (step 2 of 2)",
    ]
    late = step(routing, MessageStatus.SENT, _reached("msg_1-1", MessageStatus.DELIVERED, NOW + 70), NOW + 70)
    assert _lines(late)[0] == "WhatsApp delivered late, after the fallback to SMS"


def test_a_failure_with_its_code_then_success_then_exhaustion() -> None:
    routing, _ = _service_routing()
    lines = _lines(step(routing, MessageStatus.SENT, _failed("msg_1-1", "131026"), NOW + 1))
    assert lines[0] == "WhatsApp failed (131026) → SMS"
    done = step(routing, MessageStatus.SENT, _reached("msg_1-2", MessageStatus.DELIVERED), NOW + 2)
    assert _lines(done) == ["Delivered on SMS"]
    other, _ = _service_routing()
    step(other, MessageStatus.SENT, _failed("msg_1-1"), NOW + 1)
    exhausted = _lines(step(other, MessageStatus.SENT, _failed("msg_1-2", "30003"), NOW + 2))
    assert exhausted == ["No channel left: SMS failed (30003)"]


def test_every_routing_event_has_a_line_and_unknown_details_show_as_they_are() -> None:
    for event in RoutingEvent:
        assert routing_line(event, Channel.SMS, "", None)
    assert routing_line(RoutingEvent.REFUSED, Channel.SMS, "opted out of sms", None) == (
        "Not sent: opted out of sms"
    )
    assert routing_line(RoutingEvent.DEFERRED, Channel.SMS, "quiet_hours", None) == "Held back: quiet hours"
    assert routing_line(RoutingEvent.SKIPPED, Channel.SMS, "sms: opted_out", None) == "Skipped SMS: opted out"


def test_events_and_engagement() -> None:
    assert event_line("cart_abandoned") == "Event: cart_abandoned"
    assert engagement_line(EngagementKind.OPENED, Channel.EMAIL, "") == "Opened (Email)"
    assert engagement_line(EngagementKind.CLICKED, Channel.SMS, "https://x.test/a") == (
        "Clicked https://x.test/a (SMS)"
    )
