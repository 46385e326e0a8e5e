"""One price table: the configured ``[prices]`` decide routing's order, ``max_price``, budgets
and each attempt's cost alike; and conversations/ never imports channels/."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from channels.attempt_renderer import AttemptRenderer
from conversations.config import PricesConfig
from conversations.models import (
    Channel,
    DecisionOutcome,
    Identifier,
    IdentifierKind,
    RouteRequest,
    SkipReason,
)
from conversations.pricing import DEFAULT_PRICES, configured_prices
from conversations.routing.context import CustomerContext
from conversations.routing.decide import decide
from conversations.routing.policy import DEFAULT_POLICY_PATH, parse_policy
from conversations.routing.rendering import AttemptContent
from conversations.store import Keys
from tests.support.stack import CONFIGURED_PRICES, Stack, eventually

ROOT = Path(__file__).resolve().parents[2]
PHONE = Identifier(IdentifierKind.PHONE, "+14155550100")
NOON = 1_741_780_800.0  # 2025-03-12 12:00 UTC


def _nz_phone() -> str:
    """An unused New Zealand mobile number (the shared stack's config reprices NZ)."""
    return f"+6421{uuid.uuid4().int % 10_000_000:07d}"


def test_conversations_never_imports_channels() -> None:
    offenders = []
    for path in sorted((ROOT / "conversations").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                for name in names
                if name == "channels" or name.startswith("channels.")
            ]
    assert offenders == []


def test_the_prices_config_has_a_field_per_channel() -> None:
    fields = {field.name for field in msgspec.structs.fields(PricesConfig)}
    assert {channel.value for channel in Channel} <= fields


def test_config_overrides_merge_over_the_defaults() -> None:
    table = configured_prices(
        msgspec.convert(
            {
                "whatsapp": {"de": 0.05},
                "by_type": {"marketing": {"whatsapp": {"US": 0.03}}, "otp": {"sms": {"GB": 0.02}}},
                "voice_minutes": 2,
                "currency": "EUR",
            },
            PricesConfig,
        )
    )
    assert table.currency == "EUR"
    assert table.cost(Channel.WHATSAPP, "DE", "service") == 0.05
    assert table.cost(Channel.WHATSAPP, "US", "marketing") == 0.03
    assert table.cost(Channel.WHATSAPP, "GB", "marketing") == 0.053  # the default marketing rate
    assert table.cost(Channel.SMS, "GB", "otp", segments=2) == 0.04
    assert table.cost(Channel.SMS, "US", "otp") == 0.0079  # not named for otp: the channel's rate
    assert table.cost(Channel.VOICE, "US") == 0.028  # per expected minute
    assert table.cost(Channel.EMAIL, "FR") == DEFAULT_PRICES.cost(Channel.EMAIL, "FR")


def test_a_configured_price_moves_max_price_and_the_attempts_cost_with_it() -> None:
    capped = parse_policy(
        DEFAULT_POLICY_PATH.read_text().replace(
            'chain = ["rcs", "whatsapp", "sms"]', 'chain = ["rcs", "whatsapp", "sms"]\nmax_price = 0.005'
        )
    )
    request = RouteRequest(
        message_id="msg_P", message_type="rich_media", body="Your order shipped", recipient=PHONE
    )
    context = CustomerContext(customer_id="cus_0_P", identifiers=[PHONE])
    table = configured_prices(PricesConfig(rcs={"US": 0.004}, sms={"US": 0.003}))

    default = decide(request, context, capped, DEFAULT_PRICES, NOON, available=frozenset(Channel))
    skipped = {skip.channel: skip.reason for skip in default.skipped}
    assert (
        skipped[Channel.RCS] is SkipReason.TOO_EXPENSIVE and skipped[Channel.SMS] is SkipReason.TOO_EXPENSIVE
    )

    configured = decide(request, context, capped, table, NOON, available=frozenset(Channel))
    assert configured.outcome is DecisionOutcome.SEND and configured.chosen is Channel.RCS
    assert [(step.channel, step.price) for step in configured.chain] == [
        (Channel.RCS, 0.004),
        (Channel.WHATSAPP, 0.004),
        (Channel.SMS, 0.003),
    ]
    render = AttemptRenderer(None, table)
    for step in configured.chain:
        content = AttemptContent(
            message_id="msg_P-1",
            recipient=PHONE,
            body=request.body,
            message_type="rich_media",
            requested_at=NOON,
            country=configured.country,
        )
        assert render(content, "cus_0_P", step.channel).cost == step.price


async def _routed(stack: Stack, message_id: str) -> dict | None:
    status, body = await stack.api("GET", f"/v1/messages/{message_id}")
    if status == 404:
        return None
    assert status == 200, body
    return body if body["routing"]["attempts"] and body["cost"] is not None else None


async def test_configured_prices_reach_routing_and_the_recorded_cost(stack: Stack) -> None:
    assert stack.config.prices == CONFIGURED_PRICES
    body = "Your table is ready"
    # Without the config, WhatsApp is the cheaper channel to New Zealand: the test can fail.
    assert DEFAULT_PRICES.price(Channel.WHATSAPP, "NZ", "service", body) < DEFAULT_PRICES.price(
        Channel.SMS, "NZ", "service", body
    )
    phone = _nz_phone()
    status, accepted = await stack.api(
        "POST", "/v1/messages", json={"to": {"phone": phone}, "type": "service", "body": body}
    )
    assert status == 202, accepted
    record = await eventually(lambda: _routed(stack, accepted["id"]))
    decision = record["routing"]["decision"]
    assert (decision["country"], decision["order"]) == ("NZ", "cheapest")
    assert [(s["channel"], s["price"]) for s in decision["chain"]] == [("sms", 0.001), ("whatsapp", 0.9)]
    (attempt,) = record["routing"]["attempts"]
    assert attempt["channel"] == "sms" and record["cost"] == 0.001
    attempt_record = await eventually(lambda: _routed_attempt(stack, attempt["id"]))
    assert attempt_record["cost"] == 0.001 and attempt_record["segments"] == 1

    # The campaign budget is checked against the same configured prices, and spent by them.
    campaign = f"nz-{uuid.uuid4().hex[:8]}"
    status, accepted = await stack.api(
        "POST",
        "/v1/messages",
        json={
            "to": {"phone": _nz_phone()},
            "type": "service",
            "body": body,
            "campaign": {"id": campaign, "budget": 0.5},
        },
    )
    assert status == 202, accepted
    record = await eventually(lambda: _routed(stack, accepted["id"]))
    decision = record["routing"]["decision"]
    assert [s["channel"] for s in decision["chain"]] == ["sms"]
    assert {s["channel"]: s["reason"] for s in decision["skipped"]} == {"whatsapp": "too_expensive"}
    assert record["cost"] == 0.001
    redis = Redis.from_url(stack.config.redis_url)
    try:
        spent = float(await redis.hget(Keys(stack.config.key_prefix).campaign(campaign), "spent"))
    finally:
        await redis.aclose()
    assert abs(spent - 0.001) < 1e-9


async def _routed_attempt(stack: Stack, attempt_id: str) -> dict | None:
    status, body = await stack.api("GET", f"/v1/messages/{attempt_id}")
    return body if status == 200 else None
