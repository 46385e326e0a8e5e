"""Email over SMTP (aiosmtplib): multipart/alternative text + HTML, our message id in Message-ID.

SMTP has no delivery receipts: a message the server accepted is recorded as ``sent`` and
that is the last status an email gets (bounces arriving later are not tracked yet). Reply
codes 4xx and connection trouble are transient (retried), 5xx are final.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import unquote, urlsplit

import aiosmtplib
import msgspec

from channels.base import ProviderError, SendResult
from conversations.config import EmailConfig
from conversations.models import Channel, MessageStatus, OutboxJob

PROVIDER = "smtp"
DEFAULT_DOMAIN = "threadline.local"


class SmtpTarget(msgspec.Struct, frozen=True):
    """Where and how to reach the SMTP server, parsed from ``smtp_url``."""

    hostname: str
    port: int
    username: str = ""
    password: str = ""
    use_tls: bool = False  # smtps://: TLS from the first byte; smtp:// uses STARTTLS when offered


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://user:pass@host:port`` or ``smtps://…``; raises ValueError naming what is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ValueError(f"smtp_url must start with smtp:// or smtps://, got {url.split('://')[0]!r}")
    if not parts.hostname:
        raise ValueError("smtp_url has no host")
    use_tls = scheme == "smtps"
    return SmtpTarget(
        hostname=parts.hostname,
        port=parts.port or (465 if use_tls else 587),
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        use_tls=use_tls,
    )


def message_id_header(message_id: str, from_address: str) -> str:
    """Our message id as an RFC 5322 Message-ID on the sender's domain."""
    domain = parseaddr(from_address)[1].rpartition("@")[2] or DEFAULT_DOMAIN
    return f"<{message_id}@{domain}>"


def build_message(job: OutboxJob, from_address: str) -> EmailMessage:
    """The MIME message for a job: text part, plus an HTML alternative when there is one."""
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = job.address
    # Line breaks in a header would be refused (or, unchecked, inject headers): one line it is.
    message["Subject"] = " ".join(job.subject.split())
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id_header(job.message_id, from_address)
    message["X-Threadline-Message-Id"] = job.message_id
    if job.opt_out_url:
        # RFC 2369 + RFC 8058: mail clients offer "Unsubscribe", and POST to it in one click.
        message["List-Unsubscribe"] = f"<{job.opt_out_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(job.body)
    if job.html:
        message.add_alternative(job.html, subtype="html")
    return message


def _reply_error(code: int, text: str) -> ProviderError:
    # 4xx: try again later (greylisting, mailbox busy); 5xx: the server will never take it.
    return ProviderError(f"SMTP {code}: {text}".strip(), code=str(code), retryable=400 <= code < 500)


class EmailSender:
    """Sends email jobs through one SMTP server (a real relay, or the simulator's sink)."""

    channel = Channel.EMAIL
    provider = PROVIDER

    def __init__(self, config: EmailConfig) -> None:
        self._config = config
        self._target = parse_smtp_url(config.smtp_url)

    async def send(self, job: OutboxJob, status_callback_url: str) -> SendResult:
        """Hand the message to the SMTP server; accepted means ``sent`` (SMTP has no receipts)."""
        message = build_message(job, self._config.from_address)
        target = self._target
        try:
            await aiosmtplib.send(
                message,
                hostname=target.hostname,
                port=target.port,
                username=target.username or None,
                password=target.password or None,
                use_tls=target.use_tls,
                timeout=self._config.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            raise _reply_error(refused.code if refused else 550, refused.message if refused else "") from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_error(exc.code, exc.message) from exc
        except aiosmtplib.SMTPConnectTimeoutError as exc:
            raise ProviderError(f"SMTP connect timed out: {exc}", code="network", retryable=True) from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            # The server may have taken the message before going quiet: never risk a duplicate.
            raise ProviderError(f"SMTP timed out: {exc}", code="timeout", retryable=True) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ProviderError(f"SMTP unreachable: {exc}", code="network", retryable=True) from exc
        return SendResult(
            provider=PROVIDER,
            provider_message_id=str(message["Message-ID"]).strip("<>"),
            status=MessageStatus.SENT,
            segments=0,
        )
