"""The shard's batch processor, driven directly against real Redis (no Ray)."""

from __future__ import annotations

from redis.asyncio import Redis

from actors.streams import ensure_group, new_batch, pending_batches
from conversations.codec import decode_message, decode_thread_event, encode
from conversations.console import ConsoleBatchHook, UpdateReason, decode_event
from conversations.ids import new_message_id
from conversations.models import (
    AgentNote,
    Channel,
    InboundMessage,
    MessageStatus,
    NoteLogged,
    OutboundRequest,
    SendOutcome,
    StatusUpdate,
)
from conversations.normalize import phone_identifier
from conversations.participants import build_processor
from conversations.sharding import shard_for_customer, shard_for_identifier
from conversations.slots import DEFAULT_SLOTS, default_slot_map, slot_for_identifier
from conversations.store import INGEST_FIELD, Keys
from conversations.thread import ThreadReader
from conversations.timers import TimerWheel
from tests.support.stack import unique_phone

ONE_SHARD = default_slot_map(DEFAULT_SLOTS, 1)
TWO_SHARDS = default_slot_map(DEFAULT_SLOTS, 2)


async def _feed(redis: Redis, keys: Keys, *entries) -> list:
    stream = keys.ingest(0)
    await ensure_group(redis, stream)
    for entry in entries:
        await redis.xadd(stream, {INGEST_FIELD: encode(entry)})
    return await new_batch(redis, stream, "shard-0", 1000, 100)


def _phone_in_slot(slot: int) -> str:
    while slot_for_identifier(phone_identifier(phone := unique_phone()), DEFAULT_SLOTS) != slot:
        pass
    return phone


def _inbound(phone: str, body: str, sid: str) -> InboundMessage:
    return InboundMessage(Channel.SMS, "twilio", sid, phone_identifier(phone), "+15005550006", body, 1.0)


async def test_a_replayed_batch_is_applied_once(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    phone = unique_phone()
    batch = await _feed(redis, keys, _inbound(phone, "a", "SM1"), _inbound(phone, "b", "SM2"))
    processor = build_processor(redis, keys, 0, ONE_SHARD)
    await processor.process(batch)
    # A crash after EXEC but before the actor noticed: the same ids come back as pending
    # with their fields gone (acked and deleted), and must change nothing.
    replay = [(stream_id, {}) for stream_id, _ in batch]
    await processor.process(replay)
    pending = [b async for b in pending_batches(redis, keys.ingest(0), "shard-0", 100)]
    assert pending == []
    reader = ThreadReader(redis, keys)
    customer_id = await reader.find_customer_id(phone_identifier(phone))
    assert customer_id is not None
    page = await reader.page(customer_id, None, 50)
    assert [e.body for e in page.entries] == ["a", "b"]


async def test_an_unprocessed_batch_stays_pending_for_the_next_incarnation(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    phone = unique_phone()
    await _feed(redis, keys, _inbound(phone, "kept", "SM9"))  # read, then the actor "dies"
    pending = [b async for b in pending_batches(redis, keys.ingest(0), "shard-0", 100)]
    assert len(pending) == 1 and len(pending[0]) == 1
    await build_processor(redis, keys, 0, ONE_SHARD).process(pending[0])
    customer_id = await ThreadReader(redis, keys).find_customer_id(phone_identifier(phone))
    assert customer_id is not None
    assert [e.body for e in (await ThreadReader(redis, keys).page(customer_id, None, 10)).entries] == ["kept"]


async def test_status_before_its_send_outcome_is_parked_then_applied(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    phone = unique_phone()
    processor = build_processor(redis, keys, 0, ONE_SHARD, clock=lambda: 1000.0)
    message_id = new_message_id()
    request = OutboundRequest(message_id, phone_identifier(phone), "hi", "service", 1000.0)
    await processor.process(await _feed(redis, keys, request))
    record = decode_message(await redis.get(keys.message(message_id)))
    assert record.routing is not None
    attempt_id = record.routing.attempts[0].id  # the provider send is the message's first attempt
    # The provider reports "delivered" by its own id before our sender recorded that id.
    early = StatusUpdate(
        Channel.WHATSAPP,
        "meta",
        "wamid.X",
        MessageStatus.DELIVERED,
        "delivered",
        1001.0,
        recipient=phone_identifier(phone),
    )
    await processor.process(await _feed(redis, keys, early))
    parked = "status:meta:wamid.X:delivered"
    assert await redis.zscore(keys.timers(0), parked) is not None
    outcome = SendOutcome(
        attempt_id, record.customer_id, "meta", MessageStatus.SENT, 1000.5, provider_message_id="wamid.X"
    )
    await processor.process(await _feed(redis, keys, outcome))
    # Only the parked status is due yet (the WhatsApp step's 60 s timeout is not).
    assert await TimerWheel(redis, keys, 0).fire_due(1010.0) == 1
    await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 100, 100))
    for mid in (attempt_id, message_id):
        record = decode_message(await redis.get(keys.message(mid)))
        assert record.status is MessageStatus.DELIVERED
        assert record.provider_message_id == "wamid.X"
        assert [h.status for h in record.history] == [
            MessageStatus.ACCEPTED,
            MessageStatus.SENT,
            MessageStatus.DELIVERED,
        ]


async def test_entries_for_a_customer_homed_elsewhere_are_forwarded(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    phone = unique_phone()
    identifier = phone_identifier(phone)
    await redis.set(keys.identity(identifier), "cus_1_EXISTING")
    batch = await _feed(redis, keys, _inbound(phone, "to shard 1", "SM5"))
    result = await build_processor(redis, keys, 0, TWO_SHARDS).process(batch)
    assert result.forwarded == 1
    assert await redis.xlen(keys.ingest(1)) == 1
    assert await redis.exists(keys.thread("cus_1_EXISTING")) == 0
    await ensure_group(redis, keys.ingest(1))
    forwarded = await new_batch(redis, keys.ingest(1), "shard-1", 10, 100)
    await build_processor(redis, keys, 1, TWO_SHARDS).process(forwarded)
    page = await ThreadReader(redis, keys).page("cus_1_EXISTING", None, 10)
    assert [e.body for e in page.entries] == ["to shard 1"]


async def test_a_new_customer_is_homed_in_the_slot_of_the_identifier_that_created_it(
    env: tuple[Redis, Keys],
) -> None:
    redis, keys = env
    phone = unique_phone()
    await build_processor(redis, keys, 0, ONE_SHARD).process(
        await _feed(redis, keys, _inbound(phone, "hi", "SM7"))
    )
    customer_id = await ThreadReader(redis, keys).find_customer_id(phone_identifier(phone))
    assert customer_id is not None
    slot = slot_for_identifier(phone_identifier(phone), DEFAULT_SLOTS)
    assert customer_id.startswith(f"cus_{slot}_")
    assert shard_for_customer(customer_id, TWO_SHARDS) == shard_for_identifier(
        phone_identifier(phone), TWO_SHARDS
    )


async def test_sessions_span_channels_and_reopen_after_an_idle_gap(env: tuple[Redis, Keys]) -> None:
    redis, keys = env
    phone = unique_phone()
    processor = build_processor(redis, keys, 0, ONE_SHARD, session_idle_seconds=3600)
    whatsapp = InboundMessage(Channel.WHATSAPP, "meta", "wamid.1", phone_identifier(phone), "", "hi", 1000.0)
    sms_reply = InboundMessage(Channel.SMS, "twilio", "SMs1", phone_identifier(phone), "", "me again", 1500.0)
    days_later = InboundMessage(
        Channel.SMS, "twilio", "SMs2", phone_identifier(phone), "", "hello?", 1000.0 + 86400
    )
    await processor.process(await _feed(redis, keys, whatsapp, sms_reply))
    await processor.process(await _feed(redis, keys, days_later))
    customer_id = await ThreadReader(redis, keys).find_customer_id(phone_identifier(phone))
    assert customer_id is not None
    sessions = [e.session_id for e in (await ThreadReader(redis, keys).page(customer_id, None, 10)).entries]
    assert sessions[0] == sessions[1] != sessions[2]
    assert all(s.startswith("ses_") for s in sessions)


async def test_an_agent_note_is_written_by_the_home_shard_and_published_with_its_agent(
    env: tuple[Redis, Keys],
) -> None:
    redis, keys = env
    phone = _phone_in_slot(0)  # a new customer is homed in its identifier's slot
    processor = build_processor(redis, keys, 0, TWO_SHARDS, console=ConsoleBatchHook(keys, 1000))
    await processor.process(await _feed(redis, keys, _inbound(phone, "hello", "SM7")))
    customer_id = await ThreadReader(redis, keys).find_customer_id(phone_identifier(phone))
    assert customer_id is not None and customer_id.startswith("cus_0_")
    note = AgentNote(customer_id, "note_1", "ada", "VIP: refund approved", 1002.0)
    # Submitted on the wrong shard, it is forwarded home like any other entry.
    await ensure_group(redis, keys.ingest(1))
    await redis.xadd(keys.ingest(1), {INGEST_FIELD: encode(note)})
    other = build_processor(redis, keys, 1, TWO_SHARDS)
    assert (await other.process(await new_batch(redis, keys.ingest(1), "shard-1", 10, 100))).forwarded == 1
    result = await processor.process(await new_batch(redis, keys.ingest(0), "shard-0", 10, 100))
    assert result.notes == {customer_id: "ada"}
    raw = await redis.xrange(keys.thread(customer_id))
    events = [decode_thread_event(fields[INGEST_FIELD]) for _, fields in raw]
    assert events[-1] == NoteLogged("note_1", "ada", "VIP: refund approved", 1002.0)
    published = [decode_event(f[INGEST_FIELD]) for _, f in await redis.xrange(keys.console_events())]
    assert published[-1].reason is UpdateReason.NOTE and published[-1].agent == "ada"
    assert await redis.xlen(keys.outbox(0)) == 0  # a note is never sent
