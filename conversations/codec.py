"""msgpack encoders/decoders for everything Threadline stores in Redis."""

from __future__ import annotations

import msgspec

from conversations.models import (
    IngestEntry,
    MessageRecord,
    OutboxJob,
    ThreadEvent,
)
from conversations.preferences import ConsentChange, Preferences

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode

decode_ingest = msgspec.msgpack.Decoder(IngestEntry).decode
decode_thread_event = msgspec.msgpack.Decoder(ThreadEvent).decode
decode_message = msgspec.msgpack.Decoder(MessageRecord).decode
decode_outbox_job = msgspec.msgpack.Decoder(OutboxJob).decode
decode_preferences = msgspec.msgpack.Decoder(Preferences).decode
decode_consent_change = msgspec.msgpack.Decoder(ConsentChange).decode
