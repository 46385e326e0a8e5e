"""The one aiohttp handler behind every provider webhook: verify, parse, pick shards, store, answer.

Every entry is durable on its shard (or a known duplicate) before the provider gets its 2xx;
a partly written request is answered with an error, the provider retries it whole, and the
dedupe keys turn the parts already stored into no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import BodyPartReader, web
from multidict import MultiDict

from channels.base import InvalidPayload, WebhookRejected
from channels.inbound import (
    AnyShard,
    BodyKind,
    ByCustomer,
    InboundAdapter,
    InboundEntry,
    ShardKey,
    WebhookRequest,
)
from conversations.codec import encode
from conversations.models import Identifier
from conversations.sharding import shard_for_customer, shard_for_identifier
from conversations.slots import SlotMap
from gateway.errors import ApiError, check_json_depth
from gateway.services import SERVICES, Services

log = logging.getLogger(__name__)

MAX_FIELD_BYTES = 2 * 1024 * 1024  # one multipart text part; SendGrid caps a whole email at 30 MB
MAX_PARTS = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def webhook_handler(adapter: InboundAdapter) -> Handler:
    """The aiohttp handler for one adapter."""

    async def handle(request: web.Request) -> web.Response:
        services = request.app[SERVICES]
        url = services.config.public_url + request.raw_path
        head = WebhookRequest(request.method, url, request.query, request.headers)
        with _mapped_errors():
            if adapter.verifies_before_body:
                adapter.verify(head)
        if (
            adapter.content_types
            and request.method == "POST"
            and request.content_type not in adapter.content_types
        ):
            accepted = " or ".join(adapter.content_types)
            raise ApiError(415, "unsupported_media_type", f"{adapter.provider} webhooks post {accepted}")
        facts = await _read(request, adapter, head)
        with _mapped_errors():
            parsed = adapter.receive(facts, services.clock())
        for reason in parsed.skipped:
            log.warning("%s webhook %s: skipped %s", adapter.provider, request.path, reason)
        fresh = await _submit_all(services, parsed.entries)
        reply = adapter.answer(parsed, fresh)
        return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)

    return handle


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """The adapter's errors as the gateway's JSON errors: 400 naming the field, or 403."""
    try:
        yield
    except InvalidPayload as exc:
        raise ApiError(400, exc.code, str(exc), exc.field) from exc
    except WebhookRejected as exc:
        raise ApiError(403, exc.code, exc.message) from exc


async def _read(request: web.Request, adapter: InboundAdapter, head: WebhookRequest) -> WebhookRequest:
    """The request with its body read the way the adapter takes it."""
    if request.method != "POST":
        return head
    if adapter.body_kind is BodyKind.FORM:
        posted = await request.post()
        form: MultiDict[str] = MultiDict(
            (name, value) for name, value in posted.items() if isinstance(value, str)
        )
        return WebhookRequest(head.method, head.url, head.query, head.headers, form=form)
    if adapter.body_kind is BodyKind.MULTIPART:
        parts = await _text_parts(request, adapter.form_fields)
        return WebhookRequest(head.method, head.url, head.query, head.headers, parts=parts)
    body = await request.read()
    if _looks_like_json(body):
        # Adapters decode raw bodies with msgspec, which recurses: bound the nesting first.
        check_json_depth(body)
    return WebhookRequest(head.method, head.url, head.query, head.headers, body=body)


def _looks_like_json(body: bytes) -> bool:
    return body.lstrip()[:1] in (b"{", b"[")


async def _text_parts(request: web.Request, names: frozenset[str]) -> dict[str, bytes]:
    """The named text parts of a multipart body; files are drained, not kept."""
    reader = await request.multipart()
    fields: dict[str, bytes] = {}
    for _ in range(MAX_PARTS):
        part = await reader.next()
        if part is None:
            return fields
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "invalid_payload", "nested multipart is not expected")
        keep = part.filename is None and part.name in names
        size = 0
        chunks = []
        while chunk := await part.read_chunk():
            size += len(chunk)
            if keep:
                if size > MAX_FIELD_BYTES:
                    raise ApiError(413, "payload_too_large", f"field {part.name} is too large", part.name)
                chunks.append(chunk)
        if keep and part.name:
            fields[part.name] = b"".join(chunks)
    raise ApiError(400, "invalid_payload", f"more than {MAX_PARTS} form parts")


def pick_shard(key: ShardKey, slot_map: SlotMap) -> int:
    """The shard an entry belongs on; 400 when a callback names a customer we cannot place."""
    if isinstance(key, Identifier):
        return shard_for_identifier(key, slot_map)
    if isinstance(key, ByCustomer):
        shard = shard_for_customer(key.customer_id, slot_map)
        if shard is None:
            raise ApiError(400, "invalid_callback_url", "status callback URL lacks our mid/cid", "cid")
        return shard
    assert isinstance(key, AnyShard)
    digest = hashlib.blake2b(key.token.encode(), digest_size=8).digest()
    return slot_map.owners[int.from_bytes(digest, "big") % slot_map.slots]


async def _submit_all(services: Services, entries: list[InboundEntry]) -> list[bool]:
    """Submit every entry at once (the writer batches them per shard); raise if any write failed."""
    if len(entries) == 1:  # the common case, without a gather
        item = entries[0]
        shard = pick_shard(item.shard_key, services.slot_map)
        return [await services.ingest.submit(shard, encode(item.entry), item.dedupe_key)]
    shards = [pick_shard(item.shard_key, services.slot_map) for item in entries]
    results = await asyncio.gather(
        *(
            services.ingest.submit(shard, encode(item.entry), item.dedupe_key)
            for shard, item in zip(shards, entries, strict=True)
        ),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [bool(result) for result in results]
