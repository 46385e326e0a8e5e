"""The one shape of an inbound webhook adapter: verify the request, parse it into entries, answer.

The gateway reads the HTTP request into a ``WebhookRequest`` (plain data), calls ``receive``
and makes every returned entry durable (deduplicated, on its shard) before it sends the
adapter's reply. Adapters own the provider's wire format; this base owns the error mapping:
whatever an adapter's decoders raise reaches the gateway as ``InvalidPayload`` (400, naming
the field) or ``WebhookRejected`` (403).
"""

from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, TypeVar

import msgspec
from multidict import MultiDict

from channels.base import InvalidPayload, WebhookRejected
from conversations.models import ConsentRequest, Identifier, InboundMessage, StatusUpdate

__all__ = [
    "AnyShard",
    "BodyKind",
    "ByCustomer",
    "InboundAdapter",
    "InboundEntry",
    "InvalidPayload",
    "Parsed",
    "ShardKey",
    "WebhookRejected",
    "WebhookReply",
    "WebhookRequest",
    "read_form",
    "validation_field",
]

T = TypeVar("T", bound=msgspec.Struct)
_FIELD_PATH = re.compile(r"at `\$\.?([^`]*)`")
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]*)`")


class BodyKind(enum.StrEnum):
    """How the gateway reads a webhook's body before the adapter sees it."""

    RAW = "raw"  # the bytes as sent (JSON bodies; signatures cover the raw bytes)
    FORM = "form"  # url-encoded (or multipart) text parameters, every value kept
    MULTIPART = "multipart"  # streamed multipart: the named text parts only, files drained


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What an adapter sees of one webhook request."""

    method: str
    url: str  # the public URL the provider called, query included (signatures cover it)
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes = b""
    form: MultiDict[str] = field(default_factory=MultiDict)
    parts: Mapping[str, bytes] = field(default_factory=dict)


class ByCustomer(NamedTuple):
    """An entry for our customer ``customer_id`` (its home shard is in the id)."""

    customer_id: str


class AnyShard(NamedTuple):
    """An entry any shard can resolve (e.g. by provider message id): one picked stably by ``token``."""

    token: str


ShardKey = Identifier | ByCustomer | AnyShard


@dataclass(frozen=True, slots=True)
class InboundEntry:
    """One entry to make durable: the provider retries, so it carries its dedupe key."""

    entry: InboundMessage | StatusUpdate | ConsentRequest
    dedupe_key: str
    shard_key: ShardKey


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """The HTTP answer the provider expects."""

    body: bytes = b""
    content_type: str = "text/plain"
    status: int = 200


@dataclass(slots=True)
class Parsed:
    """What one webhook request carried, the reply it gets, and what was left out (and why)."""

    entries: list[InboundEntry] = field(default_factory=list)
    reply: WebhookReply | None = None  # None: the adapter's ``answer`` decides after the writes
    skipped: list[str] = field(default_factory=list)


class InboundAdapter(ABC):
    """One provider webhook: subclasses own only the wire format (verify, parse, reply)."""

    provider: ClassVar[str]
    body_kind: ClassVar[BodyKind] = BodyKind.RAW
    content_types: ClassVar[tuple[str, ...]] = ()  # empty: any (415 for others)
    form_fields: ClassVar[frozenset[str]] = frozenset()  # the multipart text parts kept
    # A shared secret in the URL or headers is checked before the body is read at all.
    verifies_before_body: ClassVar[bool] = False

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Raise WebhookRejected unless the provider provably sent this request."""

    @abstractmethod
    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        """The request's entries and reply; InvalidPayload names what does not fit."""

    def answer(self, parsed: Parsed, fresh: Sequence[bool]) -> WebhookReply:
        """The reply once every entry is durable (``fresh``: not a known duplicate, per entry)."""
        return parsed.reply or WebhookReply()

    def receive(self, request: WebhookRequest, now: float) -> Parsed:
        """Verify (unless already done before the body was read), then parse, with errors mapped."""
        try:
            if not self.verifies_before_body:
                self.verify(request)
            return self.parse(request, now)
        except msgspec.ValidationError as exc:
            message, path = validation_field(exc)
            raise InvalidPayload(message, path) from exc
        except msgspec.DecodeError as exc:
            raise InvalidPayload(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
        except RecursionError as exc:
            # The gateway bounds a body's nesting first; this covers JSON nested inside a field.
            raise InvalidPayload("JSON nests too deeply", code="json_too_deep") from exc


def validation_field(exc: msgspec.ValidationError) -> tuple[str, str | None]:
    """A msgspec validation error as (message, field path): ``$.to.phone`` becomes ``to.phone``."""
    text = str(exc)
    match = _FIELD_PATH.search(text)
    path = match.group(1) if match else ""
    named = _NAMED_FIELD.search(text)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    message = _FIELD_PATH.sub("", text).strip(" -")
    return message or text, path or None


def read_form(form: Mapping[str, str], struct: type[T]) -> T:
    """The provider's form as its struct (the one the OpenAPI document shows); extra fields ignored."""
    names = struct.__struct_encode_fields__
    try:
        return msgspec.convert({name: form[name] for name in names if name in form}, struct)
    except msgspec.ValidationError as exc:
        message, path = validation_field(exc)
        raise InvalidPayload(message, path) from exc
