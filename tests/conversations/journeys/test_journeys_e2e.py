"""Journeys through the whole stack: HTTP in, shard actors, timers, the SMS simulator out.

Hours and days pass without sleeping: the test fires the customer's shard's TimerWheel with a
future ``now`` (what the actor's own poller does with the real time). Every send is checked
where it lands: the SMS, WhatsApp, voice and SMTP simulators.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import ray
from redis.asyncio import Redis

from conversations.sharding import shard_for_customer
from conversations.store import Keys
from conversations.timers import TimerWheel
from tests.journeys_support import EXAMPLES
from tests.support.console import ConsoleClient, create_agent
from tests.support.email import mail_to, unique_email
from tests.support.shards import home_shard, settle, timers_of
from tests.support.stack import Stack, eventually, unique_phone

HOUR = 3600.0
DAY = 86400.0


async def put_example(stack: Stack, name: str) -> None:
    body = (EXAMPLES / f"{name}.yaml").read_bytes()
    status, reply = await stack.api(
        "PUT", f"/v1/journeys/{name}", data=body, headers={"Content-Type": "application/yaml"}
    )
    assert status in (200, 201), reply


async def fire_timers(stack: Stack, customer_id: str, ahead: float) -> int:
    """Fire the customer's shard's timers due within ``ahead`` seconds from now."""
    shard = shard_for_customer(customer_id, stack.config.slot_map())
    assert shard is not None
    redis = Redis.from_url(stack.config.redis_url)
    try:
        return await TimerWheel(redis, Keys(stack.config.key_prefix), shard).fire_due(time.time() + ahead)
    finally:
        await redis.aclose()


async def event(stack: Stack, customer: dict[str, str], name: str, **properties: Any) -> None:
    status, body = await stack.api(
        "POST", "/v1/events", json={"customer": customer, "name": name, "properties": properties}
    )
    assert status == 202, body


async def journeys_of(stack: Stack, customer_id: str) -> list[dict[str, Any]]:
    status, body = await stack.api("GET", f"/v1/customers/{customer_id}/journeys")
    assert status == 200, body
    return body["data"]


async def instance_where(stack: Stack, customer_id: str, journey: str, **expected: Any) -> dict[str, Any]:
    """Wait until the customer's newest instance of ``journey`` has these field values."""

    async def probe() -> dict[str, Any] | None:
        for instance in await journeys_of(stack, customer_id):
            if instance["journey"] == journey:
                ok = all(instance.get(k) == v for k, v in expected.items())
                return instance if ok else None
        return None

    return await eventually(probe, timeout=20)


async def journey_timers(stack: Stack, customer_id: str, instance_id: str) -> list[str]:
    """The instance's timers that have not fired (ids ``journey:<instance>:<token>``)."""
    return [t for t in await timers_of(stack, customer_id) if t.startswith(f"journey:{instance_id}:")]


async def sms_bodies(stack: Stack, phone: str) -> list[str]:
    return [m["body"] for m in await stack.sent_to(phone)]


async def upsert(stack: Stack, phone: str, email: str) -> tuple[str, str]:
    external = "u-" + uuid.uuid4().hex[:12]
    status, body = await stack.api(
        "PUT", f"/v1/customers/{external}", json={"identifiers": {"phone": phone, "email": email}}
    )
    assert status == 201, body
    return external, body["customer"]["id"]


# --- definitions API ---------------------------------------------------------------


async def test_put_rejects_an_invalid_definition_naming_the_step(stack: Stack) -> None:
    definition = {
        "trigger": {"event": "cart_abandoned"},
        "steps": [
            {"id": "remind", "type": "send", "body": "hi"},
            {"id": "nudge", "type": "send", "body": "again"},
            {"id": "wait_for_purchase", "type": "wait", "event": "purchase_completed", "timeout": "later"},
        ],
    }
    status, body = await stack.api("PUT", "/v1/journeys/broken", json=definition)
    assert status == 422
    assert body["error"] == {
        "code": "invalid_journey",
        "message": "steps[2] (wait_for_purchase).timeout: expected duration like 30s, 4h or 14d",
        "field": "steps[2].timeout",
    }
    status, body = await stack.api("GET", "/v1/journeys/broken")
    assert status == 404 and body["error"]["code"] == "journey_not_found"
    status, body = await stack.api(
        "PUT", "/v1/journeys/broken", data=b"steps: [", headers={"Content-Type": "application/yaml"}
    )
    assert status == 400 and body["error"]["code"] == "invalid_yaml"
    status, body = await stack.api("PUT", "/v1/journeys/other", json={**definition, "name": "broken"})
    assert status == 422 and body["error"]["field"] == "name"


async def test_put_versions_a_journey_and_list_shows_it(stack: Stack) -> None:
    name = "greet_" + uuid.uuid4().hex[:8]
    definition = {
        "trigger": {"event": f"{name}_signed_up"},
        "steps": [{"id": "hello", "type": "send", "channel": "sms", "body": "Welcome!"}],
    }
    status, first = await stack.api("PUT", f"/v1/journeys/{name}", json=definition)
    assert status == 201 and (first["version"], first["changed"]) == (1, True)
    status, same = await stack.api("PUT", f"/v1/journeys/{name}", json=definition)
    assert status == 200 and (same["version"], same["changed"]) == (1, False)
    definition["steps"][0]["body"] = "Welcome aboard!"
    status, second = await stack.api("PUT", f"/v1/journeys/{name}", json=definition)
    assert status == 200 and second["version"] == 2
    status, listing = await stack.api("GET", "/v1/journeys")
    mine = next(j for j in listing["data"] if j["name"] == name)
    assert (mine["version"], mine["versions"], mine["status"]) == (2, [1, 2], "active")
    status, old = await stack.api("GET", f"/v1/journeys/{name}", params={"version": "1"})
    assert status == 200 and old["definition"]["steps"][0]["body"] == "Welcome!"
    assert old["current_version"] == 2


# --- the built-in examples, end to end ------------------------------------------------


async def whatsapp_to(stack: Stack, phone: str) -> list[dict[str, Any]]:
    return (await stack.simulator("GET", "/simulator/whatsapp/messages", params={"to": phone}))["messages"]


async def calls_to(stack: Stack, phone: str) -> list[dict[str, Any]]:
    return (await stack.simulator("GET", "/simulator/voice/calls", params={"to": phone}))["calls"]


async def outcome_of(stack: Stack, customer_id: str, journey: str, step: str, outcome: str) -> dict[str, Any]:
    """Wait until the send of ``step`` has ``outcome``."""

    async def probe() -> dict[str, Any] | None:
        for instance in await journeys_of(stack, customer_id):
            if instance["journey"] == journey:
                for send in instance["sends"]:
                    if send["step"] == step and outcome in send["outcomes"]:
                        return send
        return None

    return await eventually(probe, timeout=20)


async def test_cart_abandonment_end_to_end(stack: Stack) -> None:
    await put_example(stack, "cart_abandonment")
    phone, email = unique_phone(), unique_email("cart")
    external, customer_id = await upsert(stack, phone, email)
    # The shopper asked something on WhatsApp, so its 24-hour window is open for the reminder.
    await stack.simulator(
        "POST", "/simulator/whatsapp/inbound", json={"from": phone, "body": "Ship to Canada?"}
    )
    await eventually(lambda: _last_channel_is(stack, customer_id, "whatsapp"))
    cart = {
        "cart_id": "c-77",
        "cart_total": 80,
        "item_count": 3,
        "cart_url": "https://shop.example/cart/c-77",
    }
    await event(stack, {"external_id": external}, "cart_abandoned", **cart)
    (reminder,) = await eventually(lambda: whatsapp_to(stack, phone))
    assert "https://shop.example/cart/c-77" in reminder["text"]["body"]
    instance = await instance_where(stack, customer_id, "cart_abandonment", status="waiting")
    assert instance["step"] == "wait_for_purchase"
    await outcome_of(stack, customer_id, "cart_abandonment", "whatsapp_reminder", "delivered")
    assert await sms_bodies(stack, phone) == []

    assert await fire_timers(stack, customer_id, 4 * HOUR + 60) >= 1
    (coupon,) = await eventually(lambda: sms_bodies(stack, phone))
    tracked = coupon.split("your cart: ")[1].split()[0]
    assert tracked.startswith(stack.config.public_url + "/t/")  # the coupon link is tracked
    async with stack.http.get(
        stack.gateway_url + tracked.removeprefix(stack.config.public_url), allow_redirects=False
    ) as response:
        assert response.status == 302
        assert response.headers["Location"] == "https://shop.example/c/c-77?coupon=COMEBACK10"
    await outcome_of(stack, customer_id, "cart_abandonment", "sms_coupon", "clicked")
    await instance_where(stack, customer_id, "cart_abandonment", step="wait_after_coupon")

    await fire_timers(stack, customer_id, 29 * HOUR)
    (mail,) = await eventually(lambda: mail_to(stack, email))
    assert mail["subject"] == "Your cart is about to expire"
    instance = await instance_where(stack, customer_id, "cart_abandonment", status="completed")
    assert [s["channel"] for s in instance["sends"]] == ["whatsapp", "sms", "email"]
    assert await sms_bodies(stack, phone) == [coupon]

    status, stats = await stack.api("GET", "/v1/journeys/cart_abandonment/stats")
    assert status == 200
    steps = {s["id"]: s for s in stats["steps"]}
    assert steps["sms_coupon"]["clicked"] >= 1 and steps["whatsapp_reminder"]["delivered"] >= 1
    assert steps["email_last_call"]["sent"] >= 1
    assert stats["entered"] == stats["active"] + stats["completed"] + stats["converted"] + stats["exited"]


async def _last_channel_is(stack: Stack, customer_id: str, channel: str) -> bool:
    status, body = await stack.api("GET", f"/v1/customers/{customer_id}")
    return status == 200 and body.get("last_channel") == channel


async def test_cart_reminder_outside_the_whatsapp_window_goes_as_a_template_and_the_journey_goes_on(
    stack: Stack,
) -> None:
    await put_example(stack, "cart_abandonment")
    phone = unique_phone()
    await event(stack, {"phone": phone}, "cart_abandoned", cart_total=9, cart_id="c9", item_count=1)
    customer_id = await eventually(lambda: stack.customer_id(phone))
    await outcome_of(stack, customer_id, "cart_abandonment", "whatsapp_reminder", "delivered")
    # No WhatsApp conversation is open: routing sent the policy's approved marketing template.
    (reminder,) = await whatsapp_to(stack, phone)
    assert reminder["type"] == "template" and reminder["template"]["name"] == "threadline_offer"
    await fire_timers(stack, customer_id, 4 * HOUR + 60)
    (coupon,) = await eventually(lambda: sms_bodies(stack, phone))
    assert "10% off" in coupon


async def test_cart_goal_mid_wait_exits_with_a_conversion(stack: Stack) -> None:
    await put_example(stack, "cart_abandonment")
    phone = unique_phone()
    await event(stack, {"phone": phone}, "cart_abandoned", cart_total=5, cart_id="c1", item_count=1)
    customer_id = await eventually(lambda: stack.customer_id(phone))
    waiting = await instance_where(stack, customer_id, "cart_abandonment", status="waiting")
    assert len(await journey_timers(stack, customer_id, waiting["id"])) == 1  # the 4-hour wait's
    _, before = await stack.api("GET", "/v1/journeys/cart_abandonment/stats")
    await event(stack, {"phone": phone}, "purchase_completed", order_id="o-1", total=5)
    instance = await instance_where(stack, customer_id, "cart_abandonment", status="converted")
    assert instance["reason"] == "goal purchase_completed" and "waiting" not in instance
    _, after = await stack.api("GET", "/v1/journeys/cart_abandonment/stats")
    assert after["converted"] == before["converted"] + 1 and after["active"] == before["active"] - 1
    assert await journey_timers(stack, customer_id, instance["id"]) == []  # the exit cancelled the wait's
    await fire_timers(stack, customer_id, 30 * HOUR)
    await settle(stack, home_shard(stack, customer_id))  # a wrongly surviving timer's SMS is out by now
    assert await sms_bodies(stack, phone) == []


async def test_support_ticket_console_handback_then_yes_on_sms_takes_the_yes_branch(stack: Stack) -> None:
    await put_example(stack, "support_ticket")
    phone = unique_phone()
    # A customer with attributes (msgpack fields in the profile hash): the console must cope.
    status, body = await stack.api(
        "PUT",
        f"/v1/customers/u-{uuid.uuid4().hex[:10]}",
        json={"identifiers": {"phone": phone}, "attributes": {"name": "Ada"}},
    )
    assert status == 201, body
    customer_id = body["customer"]["id"]
    await stack.simulator("POST", "/simulator/inbound", json={"from": phone, "body": "My parcel is lost"})
    await eventually(lambda: _last_channel_is(stack, customer_id, "sms"))
    await event(stack, {"phone": phone}, "support_ticket_created", ticket_id="T-100", subject="Lost parcel")
    (ack,) = await eventually(lambda: sms_bodies(stack, phone))
    assert "ticket T-100" in ack  # on SMS: the channel the customer last wrote on
    await instance_where(stack, customer_id, "support_ticket", status="handed_off")

    _, token = await create_agent(stack)
    agent = await ConsoleClient.connect(stack.http, stack.gateway_url, token)
    try:
        (snapshot,) = [f for f in await agent.subscribe(["all"]) if f["type"] == "queue"]
        (summary,) = [c for c in snapshot["conversations"] if c["customer_id"] == customer_id]
        assert summary["automation"] == "paused"  # the journey handed the customer to agents
        assert (await agent.request({"type": "claim", "customer_id": customer_id}))["type"] == "ack"
        assert (await agent.request({"type": "handback", "customer_id": customer_id}))["type"] == "ack"
    finally:
        await agent.close()
    await instance_where(stack, customer_id, "support_ticket", status="waiting")
    assert (await eventually(lambda: _last_sms(stack, phone, "Reply YES or NO"))).endswith("Reply YES or NO.")

    await stack.simulator("POST", "/simulator/inbound", json={"from": phone, "body": "yes"})
    instance = await instance_where(stack, customer_id, "support_ticket", status="completed")
    assert [entry["what"] for entry in instance["log"] if entry["step"] == "answer"] == ["case 0 -> thanks"]
    # Resumed by the handback entry (naming the agent) or, if a status callback got there first,
    # by the switch the console flipped just before submitting it.
    assert any(entry["what"].startswith("handed back by ") for entry in instance["log"]), instance["log"]
    thanks = await eventually(lambda: _last_sms(stack, phone, "glad we could help"))
    assert "T-100" in thanks


async def _last_sms(stack: Stack, phone: str, containing: str) -> str | None:
    return next((b for b in reversed(await sms_bodies(stack, phone)) if containing in b), None)


async def test_otp_sms_then_voice_call_after_30_seconds(stack: Stack) -> None:
    await put_example(stack, "otp")
    phone = unique_phone()
    await event(stack, {"phone": phone}, "otp_requested", code="482913")
    (sms,) = await eventually(lambda: sms_bodies(stack, phone))
    assert "482913" in sms
    customer_id = await eventually(lambda: stack.customer_id(phone))
    await instance_where(stack, customer_id, "otp", status="waiting")
    assert await calls_to(stack, phone) == []
    await fire_timers(stack, customer_id, 31)
    (call,) = await eventually(lambda: calls_to(stack, phone))
    assert "4 8 2 9 1 3" in " ".join(call["spoken"])
    instance = await instance_where(stack, customer_id, "otp", status="completed")
    assert [s["channel"] for s in instance["sends"]] == ["sms", "voice"]
    assert await sms_bodies(stack, phone) == [sms]  # the fallback is a call, not another SMS

    verified = unique_phone()
    await event(stack, {"phone": verified}, "otp_requested", code="111222")
    verified_id = await eventually(lambda: stack.customer_id(verified))
    await instance_where(stack, verified_id, "otp", status="waiting")
    await event(stack, {"phone": verified}, "otp_verified")
    instance = await instance_where(stack, verified_id, "otp", status="converted")
    assert [s["channel"] for s in instance["sends"]] == ["sms"]


async def test_purchase_completed_receipt_and_shipping_update(stack: Stack) -> None:
    await put_example(stack, "purchase_completed")
    phone, email = unique_phone(), unique_email("buyer")
    external, customer_id = await upsert(stack, phone, email)
    await event(stack, {"external_id": external}, "purchase_completed", order_id="o-1", total=30)
    await event(stack, {"external_id": external}, "purchase_completed", order_id="o-2", total=12)
    receipts = await eventually(lambda: _at_least(mail_to(stack, email), 2))
    assert sorted(m["subject"] for m in receipts) == [
        "Your receipt for order o-1",
        "Your receipt for order o-2",
    ]

    async def two_waiting() -> list[dict[str, Any]] | None:
        found = [i for i in await journeys_of(stack, customer_id) if i["journey"] == "purchase_completed"]
        return found if len(found) == 2 and all(i["status"] == "waiting" for i in found) else None

    await eventually(two_waiting, timeout=20)
    await event(stack, {"external_id": external}, "order_shipped", order_id="o-2", tracking_url="https://t/2")

    async def one_shipped() -> list[dict[str, Any]] | None:
        found = {i["trigger"]["properties"]["order_id"]: i for i in await journeys_of(stack, customer_id)}
        return list(found.values()) if found.get("o-2", {}).get("status") == "completed" else None

    instances = {i["trigger"]["properties"]["order_id"]: i for i in await eventually(one_shipped)}
    assert [s["channel"] for s in instances["o-2"]["sends"]] == ["email", "whatsapp"]
    assert instances["o-1"]["status"] == "waiting" and [s["channel"] for s in instances["o-1"]["sends"]] == [
        "email"
    ]
    # A transactional WhatsApp outside the 24 h window goes out as the configured approved template.
    (update,) = await eventually(lambda: whatsapp_to(stack, phone))
    assert update["type"] == "template"


async def _at_least(found: Any, count: int) -> list[dict[str, Any]] | None:
    items = await found
    return items if len(items) >= count else None


async def test_subscription_renewal_reminders_escalate_to_sms(stack: Stack) -> None:
    await put_example(stack, "subscription_renewal")
    phone, email = unique_phone(), unique_email("sub")
    external, customer_id = await upsert(stack, phone, email)
    renews = time.time() + 20 * DAY
    renews_at = datetime.fromtimestamp(renews, UTC).isoformat()
    await event(
        stack, {"external_id": external}, "subscription_renewal_scheduled", plan="Pro", renews_at=renews_at
    )
    await instance_where(stack, customer_id, "subscription_renewal", step="until_14_days_before")
    assert await mail_to(stack, email) == []
    await fire_timers(stack, customer_id, 6 * DAY + 60)
    (mail,) = await eventually(lambda: mail_to(stack, email))
    assert mail["subject"] == f"Your Pro plan renews on {renews_at[:10]}"
    await instance_where(stack, customer_id, "subscription_renewal", step="until_3_days_before")
    await fire_timers(stack, customer_id, 17 * DAY + 60)
    await instance_where(stack, customer_id, "subscription_renewal", step="until_1_day_before")
    assert await sms_bodies(stack, phone) == []
    await fire_timers(stack, customer_id, 19 * DAY + 60)
    instance = await instance_where(stack, customer_id, "subscription_renewal", status="completed")
    assert [s["channel"] for s in instance["sends"]] == ["email", "whatsapp", "sms"]
    (sms,) = await eventually(lambda: sms_bodies(stack, phone))
    assert sms.startswith("Your Pro plan renews tomorrow")


# --- durability ----------------------------------------------------------------------


async def test_a_shard_actor_killed_during_a_wait_resumes_and_the_wait_fires_once(stack: Stack) -> None:
    name = "kill_" + uuid.uuid4().hex[:8]
    definition = {
        "trigger": {"event": f"{name}_started"},
        "steps": [
            {"id": "before", "type": "send", "channel": "sms", "body": "before the wait"},
            {"id": "pause", "type": "wait", "duration": "4s"},
            {"id": "after", "type": "send", "channel": "sms", "body": "after the wait"},
        ],
    }
    status, _ = await stack.api("PUT", f"/v1/journeys/{name}", json=definition)
    assert status == 201
    phone = unique_phone()
    await event(stack, {"phone": phone}, f"{name}_started")
    assert await eventually(lambda: sms_bodies(stack, phone)) == ["before the wait"]
    customer_id = await eventually(lambda: stack.customer_id(phone))
    await instance_where(stack, customer_id, name, status="waiting")
    home = shard_for_customer(customer_id, stack.config.slot_map())
    assert home is not None
    ray.kill(stack.actors[home], no_restart=False)  # Ray restarts it; the timer is in Redis

    bodies = await eventually(lambda: _two(stack, phone), timeout=60, interval=0.25)
    assert bodies == ["before the wait", "after the wait"]
    instance = await instance_where(stack, customer_id, name, status="completed")
    assert [entry["what"] for entry in instance["log"] if entry["step"] == "pause"] == [
        "waiting 4s",
        "waited",
    ]
    # The wait's timer is gone once fired: ten days on, this instance has nothing left to fire.
    assert await journey_timers(stack, customer_id, instance["id"]) == []
    await fire_timers(stack, customer_id, 10 * DAY)
    await settle(stack, home)  # a second firing's SMS is out by now
    assert await sms_bodies(stack, phone) == ["before the wait", "after the wait"]  # fired once
    status, stats = await stack.api("GET", f"/v1/journeys/{name}/stats")
    assert [(s["id"], s["sent"]) for s in stats["steps"]] == [("before", 1), ("after", 1)]
    assert (stats["entered"], stats["completed"], stats["active"]) == (1, 1, 0)
    assert await stack.actors[home].ping.remote() == home


async def _two(stack: Stack, phone: str) -> list[str] | None:
    bodies = await sms_bodies(stack, phone)
    return bodies if len(bodies) >= 2 else None
