"""The pure step machine over every built-in example, with injected time (no Redis, no Ray)."""

from __future__ import annotations

from datetime import UTC, datetime

from conversations.journeys.instance import (
    CancelTimer,
    Count,
    EventSeen,
    EventSnapshot,
    Finish,
    HandBack,
    HandedBack,
    HandOff,
    InstanceStatus,
    ReplySeen,
    ScheduleTimer,
    SendJourneyMessage,
    SetAttributes,
    StatusSeen,
    TimerFired,
)
from conversations.journeys.machine import advance, may_enter, stop, triggers
from conversations.models import Channel, IdentifierKind
from tests.journeys_support import DAY, HOUR, T0, Drive, customer, example, of_type

CART = {"cart_id": "c-42", "cart_total": 59.5, "item_count": 2, "cart_url": "https://shop.example/cart/c-42"}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def test_cart_abandonment_whatsapp_then_sms_coupon_then_email() -> None:
    drive = Drive(example("cart_abandonment"), customer(name="Ada"))
    effects = drive.start("cart_abandoned", CART)
    (whatsapp,) = of_type(effects, SendJourneyMessage)
    assert whatsapp.channel is Channel.WHATSAPP and whatsapp.message_type == "marketing"
    assert whatsapp.recipient.kind is IdentifierKind.PHONE
    assert whatsapp.body.startswith("Hi Ada, you left 2 item(s)") and CART["cart_url"] in whatsapp.body
    assert of_type(effects, ScheduleTimer) == [ScheduleTimer(1, T0 + 4 * HOUR)]
    assert drive.current.status is InstanceStatus.WAITING and drive.current.wait is not None
    assert drive.current.wait.step == "wait_for_purchase"

    effects = drive.step(TimerFired(1), T0 + 4 * HOUR)
    (sms,) = of_type(effects, SendJourneyMessage)
    assert sms.channel is Channel.SMS
    assert "https://shop.example/c/c-42?coupon=COMEBACK10" in sms.body
    assert of_type(effects, ScheduleTimer) == [ScheduleTimer(2, T0 + 28 * HOUR)]

    assert drive.step(TimerFired(1), T0 + 5 * HOUR) == []  # a stale timer changes nothing

    effects = drive.step(TimerFired(2), T0 + 28 * HOUR)
    (email,) = of_type(effects, SendJourneyMessage)
    assert email.channel is Channel.EMAIL and email.recipient.value == "ada@example.com"
    assert email.subject == "Your cart is about to expire" and email.track and sms.track
    assert "59.5 USD" in email.body
    assert of_type(effects, Finish) == [Finish(InstanceStatus.COMPLETED, "completed")]
    assert [s.channel for s in drive.current.sends] == ["whatsapp", "sms", "email"]
    assert len({s.message_id for s in drive.current.sends}) == 3


def test_cart_goal_mid_wait_converts_and_cancels_the_timer() -> None:
    drive = Drive(example("cart_abandonment"))
    drive.start("cart_abandoned", CART)
    effects = drive.step(
        EventSeen(EventSnapshot("purchase_completed", T0 + HOUR, {"order_id": "o1"})), T0 + HOUR
    )
    assert of_type(effects, CancelTimer) == [CancelTimer(1)]
    assert of_type(effects, Finish) == [Finish(InstanceStatus.CONVERTED, "goal purchase_completed")]
    assert drive.current.status is InstanceStatus.CONVERTED and drive.current.wait is None
    assert drive.step(TimerFired(1), T0 + 4 * HOUR) == []  # a finished instance ignores everything


def test_cart_exit_event_and_trigger_filter_and_entry_rule() -> None:
    journey = example("cart_abandonment")
    drive = Drive(journey)
    drive.start("cart_abandoned", CART)
    effects = drive.step(EventSeen(EventSnapshot("cart_emptied", T0 + 60, {})), T0 + 60)
    assert of_type(effects, Finish) == [Finish(InstanceStatus.EXITED, "exit event cart_emptied")]
    assert triggers(journey, EventSnapshot("cart_abandoned", T0, CART), customer())
    assert not triggers(journey, EventSnapshot("cart_abandoned", T0, {**CART, "cart_total": 0}), customer())
    assert may_enter(journey, None, T0)
    assert not may_enter(journey, T0, T0 + 6 * DAY)  # once per 7 days
    assert may_enter(journey, T0, T0 + 7 * DAY)


def test_purchase_completed_receipt_then_shipping_update_for_the_same_order() -> None:
    drive = Drive(example("purchase_completed"))
    effects = drive.start("purchase_completed", {"order_id": "o-7", "total": 42, "currency": "EUR"})
    (receipt,) = of_type(effects, SendJourneyMessage)
    assert receipt.channel is Channel.EMAIL and receipt.message_type == "transactional"
    assert "o-7" in receipt.body and "42 EUR" in receipt.body
    assert of_type(effects, ScheduleTimer) == [ScheduleTimer(1, T0 + 14 * DAY)]
    other = EventSnapshot("order_shipped", T0 + DAY, {"order_id": "o-8", "tracking_url": "https://t/8"})
    assert drive.step(EventSeen(other), T0 + DAY) == []  # another order's shipment
    mine = EventSnapshot("order_shipped", T0 + 2 * DAY, {"order_id": "o-7", "tracking_url": "https://t/7"})
    effects = drive.step(EventSeen(mine), T0 + 2 * DAY)
    assert of_type(effects, CancelTimer) == [CancelTimer(1)]
    (update,) = of_type(effects, SendJourneyMessage)
    assert update.channel is Channel.WHATSAPP and "https://t/7" in update.body and "o-7" in update.body
    assert drive.current.status is InstanceStatus.COMPLETED


def test_purchase_completed_without_shipping_ends_after_the_timeout() -> None:
    drive = Drive(example("purchase_completed"))
    drive.start("purchase_completed", {"order_id": "o-9", "total": 1})
    effects = drive.step(TimerFired(1), T0 + 14 * DAY)
    assert of_type(effects, SendJourneyMessage) == []
    assert drive.current.status is InstanceStatus.COMPLETED and drive.current.last_wait == "timeout"


def test_subscription_renewal_reminders_at_14_3_and_1_days_escalating() -> None:
    drive = Drive(example("subscription_renewal"))
    renews = T0 + 20 * DAY
    event = {"plan": "Pro", "renews_at": _iso(renews), "price": "$10", "manage_url": "https://x/m"}
    effects = drive.start("subscription_renewal_scheduled", event)
    assert of_type(effects, SendJourneyMessage) == []
    assert of_type(effects, ScheduleTimer) == [ScheduleTimer(1, renews - 14 * DAY)]
    sent = []
    for token, due in ((1, renews - 14 * DAY), (2, renews - 3 * DAY), (3, renews - DAY)):
        effects = drive.step(TimerFired(token), due)
        sent += of_type(effects, SendJourneyMessage)
    assert [s.channel for s in sent] == [Channel.EMAIL, Channel.WHATSAPP, Channel.SMS]
    assert _iso(renews)[:10] in sent[0].body
    assert drive.current.status is InstanceStatus.COMPLETED


def test_subscription_renewal_announced_late_skips_passed_reminders_but_not_the_last() -> None:
    drive = Drive(example("subscription_renewal"))
    renews = T0 + 2 * DAY
    effects = drive.start("subscription_renewal_scheduled", {"plan": "Pro", "renews_at": renews})
    assert of_type(effects, SendJourneyMessage) == []
    assert of_type(effects, ScheduleTimer) == [ScheduleTimer(1, renews - DAY)]
    effects = drive.step(TimerFired(1), renews - DAY)
    assert [s.channel for s in of_type(effects, SendJourneyMessage)] == [Channel.SMS]
    assert drive.step(EventSeen(EventSnapshot("subscription_renewed", renews, {})), renews) == []


def test_support_ticket_ack_on_last_channel_handoff_then_yes_branch() -> None:
    drive = Drive(example("support_ticket"), customer(last_channel="sms"))
    effects = drive.start("support_ticket_created", {"ticket_id": "T-1", "subject": "Broken zipper"})
    (ack,) = of_type(effects, SendJourneyMessage)
    assert ack.channel is Channel.SMS and "T-1" in ack.body
    assert of_type(effects, HandOff) == [HandOff("support", "Ticket T-1: Broken zipper")]
    assert drive.current.status is InstanceStatus.HANDED_OFF
    # While an agent has the customer, replies do not move the journey.
    assert of_type(drive.step(ReplySeen("sms", "hello?", T0 + 60), T0 + 60), SendJourneyMessage) == []
    assert drive.current.status is InstanceStatus.HANDED_OFF

    effects = drive.step(HandedBack(T0 + HOUR, "agent-7"), T0 + HOUR)
    assert of_type(effects, HandBack) == [HandBack()]
    (question,) = of_type(effects, SendJourneyMessage)
    assert "Reply YES or NO" in question.body
    assert of_type(effects, ScheduleTimer) == [ScheduleTimer(2, T0 + 25 * HOUR)]

    effects = drive.step(ReplySeen("sms", " Yes! ", T0 + 2 * HOUR), T0 + 2 * HOUR)
    assert of_type(effects, CancelTimer) == [CancelTimer(2)]
    (thanks,) = of_type(effects, SendJourneyMessage)
    assert thanks.body.startswith("Great, glad we could help")
    assert Count("ask_resolved", "replied") in effects
    assert drive.current.status is InstanceStatus.COMPLETED


def test_support_ticket_no_goes_back_to_the_agents() -> None:
    drive = Drive(example("support_ticket"), customer(last_channel="whatsapp"))
    drive.start("support_ticket_created", {"ticket_id": "T-2"})
    drive.step(HandedBack(T0 + HOUR), T0 + HOUR)
    effects = drive.step(ReplySeen("whatsapp", "no", T0 + 2 * HOUR), T0 + 2 * HOUR)
    (reopen,) = of_type(effects, SendJourneyMessage)
    assert reopen.channel is Channel.WHATSAPP and "pick ticket T-2 up again" in reopen.body
    assert of_type(effects, HandOff) == [HandOff("support", "Ticket T-2: ")]
    assert drive.current.status is InstanceStatus.HANDED_OFF


def test_support_ticket_without_a_last_channel_lets_routing_choose() -> None:
    drive = Drive(example("support_ticket"), customer(last_channel=""))
    (ack,) = of_type(drive.start("support_ticket_created", {"ticket_id": "T-3"}), SendJourneyMessage)
    assert ack.channel is None and ack.recipient.kind is IdentifierKind.PHONE


def test_otp_voice_fallback_after_30_seconds() -> None:
    drive = Drive(example("otp"))
    effects = drive.start("otp_requested", {"code": "123456"})
    (sms,) = of_type(effects, SendJourneyMessage)
    assert sms.channel is Channel.SMS and "123456" in sms.body and sms.message_type == "transactional"
    assert of_type(effects, ScheduleTimer) == [ScheduleTimer(1, T0 + 30)]
    effects = drive.step(TimerFired(1), T0 + 30)
    (voice,) = of_type(effects, SendJourneyMessage)
    assert voice.channel is Channel.VOICE and "1 2 3 4 5 6" in voice.body
    assert drive.current.status is InstanceStatus.COMPLETED


def test_otp_verified_in_time_converts_without_a_call() -> None:
    drive = Drive(example("otp"))
    drive.start("otp_requested", {"code": 987654})
    effects = drive.step(EventSeen(EventSnapshot("otp_verified", T0 + 12, {})), T0 + 12)
    assert of_type(effects, SendJourneyMessage) == []
    assert of_type(effects, CancelTimer) == [CancelTimer(1)]
    assert drive.current.status is InstanceStatus.CONVERTED


def test_send_statuses_are_counted_once_per_outcome() -> None:
    drive = Drive(example("otp"))
    drive.start("otp_requested", {"code": "1"})
    message_id = drive.current.sends[0].message_id
    effects = drive.step(StatusSeen(message_id, "delivered", T0 + 1), T0 + 1)
    effects += drive.step(StatusSeen(message_id, "delivered", T0 + 2), T0 + 2)
    effects += drive.step(StatusSeen(message_id, "read", T0 + 3), T0 + 3)
    assert of_type(effects, Count) == [Count("sms_code", "delivered"), Count("sms_code", "read")]
    assert drive.current.sends[0].outcomes == ["sent", "delivered", "read"]
    assert of_type(drive.step(StatusSeen(message_id, "sent", T0 + 4), T0 + 4), Count) == []


def test_branch_on_outcome_attribute_and_update_step() -> None:
    from conversations.journeys.definition import compile_journey, parse_definition

    journey = compile_journey(
        parse_definition(
            {
                "name": "nudge",
                "trigger": {"event": "signed_up"},
                "steps": [
                    {"id": "hello", "type": "send", "channel": "sms", "body": "Hi {{ customer.name }}"},
                    {"id": "pause", "type": "wait", "duration": "1h"},
                    {
                        "id": "check",
                        "type": "branch",
                        "cases": [
                            {"outcome": ["failed"], "goto": "by_email"},
                            {"match": [{"attribute": "custom.vip", "value": True}], "goto": "vip"},
                        ],
                        "default": "end",
                    },
                    {
                        "id": "by_email",
                        "type": "send",
                        "channel": "email",
                        "body": "Hi by email",
                        "next": "end",
                    },
                    {"id": "vip", "type": "update", "set": {"custom.nudged": "{{ journey.name }}"}},
                ],
            }
        ),
        1,
    )
    failed = Drive(journey, customer(name="Bo"))
    failed.start("signed_up", {})
    failed.step(StatusSeen(failed.current.sends[0].message_id, "failed", T0 + 5), T0 + 5)
    (email,) = of_type(failed.step(TimerFired(1), T0 + HOUR), SendJourneyMessage)
    assert email.channel is Channel.EMAIL

    vip = Drive(journey, customer(**{"custom.vip": True}))
    vip.start("signed_up", {})
    effects = vip.step(TimerFired(1), T0 + HOUR)
    assert of_type(effects, SetAttributes) == [SetAttributes({"custom.nudged": "nudge"})]
    assert vip.current.status is InstanceStatus.COMPLETED

    plain = Drive(journey, customer())
    plain.start("signed_up", {})
    assert of_type(plain.step(TimerFired(1), T0 + HOUR), SendJourneyMessage) == []
    assert plain.current.status is InstanceStatus.COMPLETED


def test_a_send_without_an_address_fails_without_emitting() -> None:
    from conversations.journeys.instance import JourneyCustomer

    drive = Drive(example("otp"), JourneyCustomer("cus_0_NOPHONE"))
    effects = drive.start("otp_requested", {"code": "1"})
    assert of_type(effects, SendJourneyMessage) == []
    assert Count("sms_code", "failed") in effects
    assert "no address" in drive.current.sends[0].error


def test_stop_exits_and_cancels_the_wait() -> None:
    journey = example("cart_abandonment")
    drive = Drive(journey)
    drive.start("cart_abandoned", CART)
    stopped, effects = stop(drive.current, journey, T0 + 10, "restarted", drive.customer)
    assert stopped.status is InstanceStatus.EXITED and stopped.reason == "restarted"
    assert CancelTimer(1) in effects
    assert advance(stopped, journey, TimerFired(1), T0 + 4 * HOUR, drive.customer)[1] == []


def test_a_handoff_timeout_hands_back_by_itself() -> None:
    from conversations.journeys.definition import compile_journey, parse_definition

    journey = compile_journey(
        parse_definition(
            {
                "name": "escalate",
                "trigger": {"event": "complaint"},
                "steps": [
                    {"id": "agents", "type": "handoff", "queue": "tier2", "timeout": "2h"},
                    {"id": "sorry", "type": "send", "channel": "sms", "body": "Sorry for the wait"},
                ],
            }
        ),
        1,
    )
    drive = Drive(journey)
    effects = drive.start("complaint", {})
    assert of_type(effects, HandOff) == [HandOff("tier2", "")]
    assert of_type(effects, ScheduleTimer) == [ScheduleTimer(1, T0 + 2 * HOUR)]
    effects = drive.step(TimerFired(1), T0 + 2 * HOUR)
    assert of_type(effects, HandBack) == [HandBack()] and of_type(effects, CancelTimer) == []
    assert [s.body for s in of_type(effects, SendJourneyMessage)] == ["Sorry for the wait"]
    assert ("agents", "timed out") in [(entry.step, entry.what) for entry in drive.current.log]
    assert drive.current.status is InstanceStatus.COMPLETED
