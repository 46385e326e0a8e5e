"""The 24-hour customer-service window, enforced by routing in the shard's batch processor."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from actors.streams import ensure_group, new_batch
from conversations.batch.processor import BatchProcessor
from conversations.codec import decode_outbox_job, encode
from conversations.config import WhatsAppTemplate
from conversations.ids import new_message_id
from conversations.models import Channel, InboundMessage, MessageStatus, OutboundRequest, TemplateRef
from conversations.normalize import phone_identifier
from conversations.participants import build_processor
from conversations.participants.routing import RoutingSettings
from conversations.slots import DEFAULT_SLOTS, default_slot_map
from conversations.store import INGEST_FIELD, Keys
from conversations.thread import ThreadReader
from tests.support.stack import unique_phone

ONE_SHARD = default_slot_map(DEFAULT_SLOTS, 1)

T0 = 1_750_000_000.0
HOUR = 3600.0


# --- enforced where the outbound job is built (the shard's batch processor, real Redis) ------


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _apply(redis: Redis, keys: Keys, processor: BatchProcessor, *entries) -> None:
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
    routing = RoutingSettings(whatsapp_templates=templates)
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=clock, routing=routing)
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
    assert (records["out"].status, records["out"].error_code) == (MessageStatus.FAILED, "outside_window")
    assert records["tpl"].template == TemplateRef("order_update", "en_US", ("tpl",))
    jobs = [decode_outbox_job(fields[INGEST_FIELD]) for _, fields in await redis.xrange(keys.outbox(0))]
    assert [(job.body, job.template) for job in jobs] == [("in", None), ("tpl", records["tpl"].template)]
