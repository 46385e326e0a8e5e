"""The simulator's email side: an SMTP sink (aiosmtpd) and SendGrid-style inbound posts.

- SMTP on ``settings.smtp_port`` takes whatever the gateway sends and records it;
  ``GET /simulator/email/messages[?to=]`` lists it, parsed (both parts, headers).
- ``POST /simulator/email/fail`` makes the next RCPT to an address answer with an SMTP code
  (4xx transient, 5xx final).
- ``POST /simulator/email/inbound`` makes a customer write to us: the simulator posts a
  multipart form as SendGrid Inbound Parse would to ``/webhooks/email/inbound``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

SINK_HOSTNAME = "smtp.simulator.threadline.local"


class EmailFailure(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/email/fail``: refuse the next ``count`` RCPTs to ``to`` with ``code``."""

    to: str
    code: int = 550
    message: str = "5.1.1 Mailbox unavailable"
    count: int = 1


class InboundEmail(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /simulator/email/inbound``: a customer's email to the business."""

    from_: str = msgspec.field(name="from")
    text: str = ""
    html: str = ""
    subject: str = ""
    to: str = "support@inbound.threadline.local"
    message_id: str = ""  # empty: a fresh one
    in_reply_to: str = ""
    spf: str = "pass"  # SendGrid's SPF result for the envelope sender
    dkim: str = ""  # SendGrid's DKIM results; empty: one passing signature of the sender's domain


def _parts(message: EmailMessage) -> tuple[str, str]:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    text = text_part.get_content() if isinstance(text_part, EmailMessage) else ""
    html = html_part.get_content() if isinstance(html_part, EmailMessage) else ""
    # SMTP carries CRLF line ends; show the content as a mail client would.
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


@dataclass
class SmtpSink:
    """An aiosmtpd handler that records every message and can refuse scripted recipients."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    failures: list[EmailFailure] = field(default_factory=list)

    def _take_failure(self, address: str) -> EmailFailure | None:
        for index, failure in enumerate(self.failures):
            if failure.to.lower() == address.lower():
                if failure.count <= 1:
                    del self.failures[index]
                else:
                    self.failures[index] = msgspec.structs.replace(failure, count=failure.count - 1)
                return failure
        return None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        failure = self._take_failure(address)
        if failure is not None:
            return f"{failure.code} {failure.message}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        message = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)
        text, html = _parts(message)
        self.messages.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "to": parseaddr(str(message.get("To", "")))[1],
                "from": str(message.get("From", "")),
                "subject": str(message.get("Subject", "")),
                "message_id": str(message.get("Message-ID", "")),
                "content_type": message.get_content_type(),
                "text": text,
                "html": html,
                "headers": {name: str(value) for name, value in message.items()},
                "received_at": time.time(),
            }
        )
        return "250 2.0.0 Message accepted for delivery"


class EmailSettings(msgspec.Struct, frozen=True):
    """Where the sink listens and how inbound posts reach the gateway."""

    smtp_port: int
    gateway_url: str
    inbound_secret: str = ""


SINK = web.AppKey("smtp_sink", SmtpSink)
EMAIL_SETTINGS = web.AppKey("email_settings", EmailSettings)


def sendgrid_form(script: InboundEmail, message_id: str) -> aiohttp.MultipartWriter:
    """The multipart body SendGrid Inbound Parse posts for one email (no attachments)."""
    name, address = parseaddr(script.from_)
    headers = [
        f"Received: from mail.example.net by mx.sendgrid.net with SMTP id {secrets.token_hex(8)}",
        f"From: {script.from_}",
        f"To: {script.to}",
        f"Subject: {script.subject}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        f"Message-ID: <{message_id}>",
        "MIME-Version: 1.0",
    ]
    if script.in_reply_to:
        headers.append(f"In-Reply-To: {script.in_reply_to}")
    fields = {
        "headers": "\n".join(headers) + "\n",
        "dkim": script.dkim or f"{{@{address.rpartition('@')[2]} : pass}}",
        "to": script.to,
        "from": script.from_,
        "text": script.text,
        "html": script.html,
        "sender_ip": "203.0.113.7",
        "envelope": json.dumps({"to": [script.to], "from": address or name}),
        "attachments": "0",
        "subject": script.subject,
        "charsets": json.dumps({k: "UTF-8" for k in ("to", "html", "subject", "from", "text")}),
        "SPF": script.spf,
    }
    writer = aiohttp.MultipartWriter("form-data", boundary="xYzZY")
    for key, value in fields.items():
        if key == "html" and not value:
            continue
        part = writer.append(value, {"Content-Type": "text/plain; charset=utf-8"})
        part.set_content_disposition("form-data", name=key)
    return writer


async def list_messages(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    to = request.query.get("to")
    found = [m for m in sink.messages if to is None or to.lower() in (r.lower() for r in m["rcpt_tos"])]
    return web.json_response({"messages": found})


async def script_failure(request: web.Request) -> web.Response:
    try:
        failure = msgspec.json.decode(await request.read(), type=EmailFailure)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return web.json_response({"error": {"code": "validation_failed", "message": str(exc)}}, status=422)
    request.app[SINK].failures.append(failure)
    return web.json_response({"scheduled": len(request.app[SINK].failures)})


async def customer_email(request: web.Request) -> web.Response:
    """A simulated customer emails the business; answers with what the gateway said."""
    settings = request.app[EMAIL_SETTINGS]
    try:
        script = msgspec.json.decode(await request.read(), type=InboundEmail)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return web.json_response({"error": {"code": "validation_failed", "message": str(exc)}}, status=422)
    message_id = script.message_id or f"{secrets.token_hex(12)}@mail.example.net"
    url = f"{settings.gateway_url}/webhooks/email/inbound?secret={quote(settings.inbound_secret)}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=sendgrid_form(script, message_id)) as response,
    ):
        await response.read()
        return web.json_response({"message_id": message_id, "gateway_status": response.status})


async def reset(request: web.Request) -> web.Response:
    sink = request.app[SINK]
    sink.messages.clear()
    sink.failures.clear()
    return web.json_response({"reset": True})


def install(app: web.Application, settings: EmailSettings) -> None:
    """Add the email routes to the simulator app and run the SMTP sink with it."""
    app[SINK] = SmtpSink()
    app[EMAIL_SETTINGS] = settings
    app.router.add_get("/simulator/email/messages", list_messages)
    app.router.add_post("/simulator/email/fail", script_failure)
    app.router.add_post("/simulator/email/inbound", customer_email)
    app.router.add_post("/simulator/email/reset", reset)

    async def smtp_server(app: web.Application):
        loop = asyncio.get_running_loop()
        sink = app[SINK]
        server = await loop.create_server(
            lambda: SMTP(sink, hostname=SINK_HOSTNAME, loop=loop), "127.0.0.1", settings.smtp_port
        )
        yield
        server.close()
        with contextlib.suppress(TimeoutError):  # wait_closed also waits for idle client connections
            await asyncio.wait_for(server.wait_closed(), 2)

    app.cleanup_ctx.append(smtp_server)
