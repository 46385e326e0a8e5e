"""The 24-hour customer-service window rule, as plain functions of times."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from actors.streams import ensure_group, new_batch
from conversations.codec import decode_outbox_job, encode
from conversations.config import WhatsAppTemplate
from conversations.ids import new_message_id
from conversations.ingest import IngestProcessor
from conversations.models import Channel, InboundMessage, MessageStatus, OutboundRequest, TemplateRef
from conversations.normalize import phone_identifier
from conversations.store import INGEST_FIELD, Keys
from conversations.thread import ThreadReader
from conversations.whatsapp_window import (
    OUTSIDE_WINDOW,
    WINDOW_SECONDS,
    WhatsAppSendPlan,
    plan_whatsapp_send,
    window_open,
)
from tests.support.stack import unique_phone

T0 = 1_750_000_000.0
HOUR = 3600.0


def plan(last: float | None, now: float, requested=None, configured=None, body="Hi") -> WhatsAppSendPlan:
    return plan_whatsapp_send(
        body=body,
        requested_template=requested,
        configured_template=configured,
        last_inbound_at=last,
        now=now,
    )


def test_the_window_is_open_for_24_hours_after_the_last_inbound() -> None:
    assert window_open(T0, T0)
    assert window_open(T0, T0 + 23 * HOUR + 3599)
    assert not window_open(T0, T0 + WINDOW_SECONDS)
    assert not window_open(T0, T0 + 25 * HOUR)
    assert not window_open(None, T0)
    assert window_open(T0 + 5, T0)  # provider clock slightly ahead of ours


def test_free_form_inside_the_window() -> None:
    assert plan(T0, T0 + HOUR) == WhatsAppSendPlan()


def test_free_form_outside_the_window_is_refused_with_the_reason() -> None:
    for last in (None, T0 - 25 * HOUR):
        refused = plan(last, T0)
        assert refused.refused == OUTSIDE_WINDOW and refused.template is None
        assert "24-hour window" in refused.reason


def test_outside_the_window_the_configured_template_stands_in() -> None:
    configured = WhatsAppTemplate("order_update", "en_GB")
    assert plan(None, T0, configured=configured, body="Shipped").template == TemplateRef(
        "order_update", "en_GB", ("Shipped",)
    )
    no_variable = WhatsAppTemplate("hello_world", body_variable=False)
    assert plan(None, T0, configured=no_variable).template == TemplateRef("hello_world", "en_US", ())


def test_an_explicit_template_goes_in_or_out_of_the_window() -> None:
    requested = TemplateRef("appointment_reminder", "en_US", ("Tue 10:00",))
    assert plan(None, T0, requested=requested) == WhatsAppSendPlan(template=requested)
    assert plan(T0, T0 + HOUR, requested=requested).template == requested


# --- enforced where the outbound job is built (the shard's batch processor, real Redis) ------


@pytest.fixture
async def env(redis_url: str, key_prefix: str) -> AsyncIterator[tuple[Redis, Keys]]:
    keys = Keys(f"{key_prefix}:wa-window-{uuid.uuid4().hex[:6]}")
    redis = Redis.from_url(redis_url)
    yield redis, keys
    async for key in redis.scan_iter(match=keys.pattern()):
        await redis.unlink(key)
    await redis.aclose()


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _apply(redis: Redis, keys: Keys, processor: IngestProcessor, *entries) -> None:
    stream = keys.ingest(0)
    await ensure_group(redis, stream)
    for entry in entries:
        await redis.xadd(stream, {INGEST_FIELD: encode(entry)})
    await processor.process(await new_batch(redis, stream, "shard-0", 1000, 100))


def _whatsapp_from(phone: str, at: float) -> InboundMessage:
    return InboundMessage(
        Channel.WHATSAPP,
        "meta",
        f"wamid.{uuid.uuid4().hex}",
        phone_identifier(phone),
        "15550783881",
        "hi",
        at,
    )


def _send(phone: str, body: str, message_type: str = "service") -> OutboundRequest:
    return OutboundRequest(
        new_message_id(), phone_identifier(phone), body, message_type, T0, Channel.WHATSAPP
    )


async def test_the_processor_sends_inside_and_refuses_outside_the_window(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    clock = _Clock(T0)
    templates = {"transactional": WhatsAppTemplate("order_update")}
    processor = IngestProcessor(redis, keys, 0, 1, clock=clock, whatsapp_templates=templates)
    phone = unique_phone()
    inside, outside, templated = _send(phone, "in"), _send(phone, "out"), _send(phone, "tpl", "transactional")

    # The customer's message and a reply in one batch: the message opens the window for it.
    await _apply(redis, keys, processor, _whatsapp_from(phone, T0), inside)
    clock.now = T0 + 25 * HOUR
    await _apply(redis, keys, processor, outside, templated)

    reader = ThreadReader(redis, keys)
    records = {
        m.body: m for m in [await reader.message(s.message_id) for s in (inside, outside, templated)] if m
    }
    assert records["in"].status is MessageStatus.ACCEPTED and records["in"].template is None
    assert (records["out"].status, records["out"].error_code) == (MessageStatus.FAILED, OUTSIDE_WINDOW)
    assert records["tpl"].template == TemplateRef("order_update", "en_US", ("tpl",))
    jobs = [decode_outbox_job(fields[INGEST_FIELD]) for _, fields in await redis.xrange(keys.outbox(0))]
    assert [(job.body, job.template) for job in jobs] == [("in", None), ("tpl", records["tpl"].template)]
