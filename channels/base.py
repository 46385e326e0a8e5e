"""The small protocol every channel adapter implements, and the errors it raises."""

from __future__ import annotations

from typing import Protocol

import msgspec

from conversations.models import Channel, MessageStatus, OutboxJob


class SendResult(msgspec.Struct, frozen=True):
    """What a provider said when it accepted a send."""

    provider: str
    provider_message_id: str
    status: MessageStatus
    segments: int = 1
    price: float | None = None


class ProviderError(Exception):
    """A provider refused or failed a call.

    ``retryable`` separates transient trouble (5xx, 429, timeouts) from a final refusal
    (e.g. Twilio 21610 unsubscribed, Meta 131026 not on WhatsApp).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
        self.http_status = http_status


class ChannelUnreachable(ProviderError):
    """The recipient cannot get messages on this channel at all (e.g. their phone has no RCS).

    Reported as a failed send with ``code``; routing's chain decides what happens next (the
    policy lists the code among the channel's ``unreachable_codes``). Never retried as is.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code, retryable=False)


class InvalidPayload(ValueError):
    """A webhook body that does not match the provider's format; ``field`` names what is wrong.

    ``code`` is the error code the gateway answers with (400).
    """

    def __init__(self, message: str, field: str | None = None, *, code: str = "invalid_payload") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


class WebhookRejected(Exception):
    """The request does not prove the provider sent it (signature, token, secret): answered 403."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Sender(Protocol):
    """Sends one outbox job on one channel."""

    channel: Channel
    provider: str

    async def send(self, job: OutboxJob, status_callback_url: str) -> SendResult:
        """Hand the job to the provider; raise ProviderError when it refuses or fails."""
        ...
