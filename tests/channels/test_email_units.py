"""Email pieces without the stack: address normalisation, SMTP URLs and errors, SendGrid parsing."""

from __future__ import annotations

import pytest

from channels.base import InvalidPayload, ProviderError
from channels.email_inbound import (
    MAX_STORED_HTML,
    MAX_STORED_TEXT,
    decode_fields,
    parse_inbound_email,
    sender_authenticated,
)
from channels.email_smtp import EmailSender, build_message, parse_smtp_url
from conversations.config import EmailConfig, load_config
from conversations.models import Channel, IdentifierKind, OutboxJob
from conversations.normalize import InvalidIdentifier, email_identifier
from gateway.embedded import free_port


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("  mailto:ann.b+tag@mail.example.co.uk ", "ann.b+tag@mail.example.co.uk"),
        ("ann@bücher.example", "ann@bücher.example"),
    ],
)
def test_email_addresses_are_lower_cased(raw: str, expected: str) -> None:
    identifier = email_identifier(raw)
    assert identifier.kind is IdentifierKind.EMAIL and identifier.value == expected


@pytest.mark.parametrize(
    "raw",
    ["", "ann", "@example.com", "ann@", "ann@example", "a b@example.com", "ann..b@example.com", "a@-x.com"],
)
def test_bad_email_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        email_identifier(raw)
    assert caught.value.field == "email"


def test_smtp_urls() -> None:
    plain = parse_smtp_url("smtp://user%40x:p%3Ass@mail.example.com:2525")
    assert (plain.hostname, plain.port, plain.username, plain.password, plain.use_tls) == (
        "mail.example.com",
        2525,
        "user@x",
        "p:ss",
        False,
    )
    assert parse_smtp_url("smtps://relay.example.com").port == 465
    assert parse_smtp_url("smtp://relay.example.com").port == 587
    with pytest.raises(ValueError, match="smtp://"):
        parse_smtp_url("http://relay.example.com")


def test_both_env_names_for_the_smtp_url() -> None:
    assert load_config(env={"THREADLINE_SMTP_URL": "smtp://a:1"}).email.smtp_url == "smtp://a:1"
    both = {"THREADLINE_SMTP_URL": "smtp://a:1", "THREADLINE_EMAIL_SMTP_URL": "smtp://b:2"}
    assert load_config(env=both).email.smtp_url == "smtp://b:2"
    assert load_config(env={"THREADLINE_EMAIL_INBOUND_SECRET": "s"}).email.inbound_secret == "s"


def test_message_has_both_parts_and_our_id() -> None:
    job = OutboxJob(
        "msg_1", "cus_0_1", Channel.EMAIL, "ann@example.com", "text", subject="Hi", html="<p>x</p>"
    )
    message = build_message(job, "Shop <hello@shop.example.com>")
    assert message["Message-ID"] == "<msg_1@shop.example.com>"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]


def test_a_subject_with_line_breaks_goes_out_on_one_line() -> None:
    """A rendered journey subject may carry CR/LF: collapsed, never a refused (or injected) header."""
    job = OutboxJob(
        "msg_1",
        "cus_0_1",
        Channel.EMAIL,
        "ann@example.com",
        "text",
        subject="Your order\r\nBcc: x@evil.example\n",
    )
    message = build_message(job, "Shop <hello@shop.example.com>")
    assert message["Subject"] == "Your order Bcc: x@evil.example"
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in message.as_bytes()


async def test_unreachable_smtp_server_is_a_retryable_error() -> None:
    sender = EmailSender(EmailConfig(smtp_url=f"smtp://127.0.0.1:{free_port()}", timeout_seconds=5))
    job = OutboxJob("msg_1", "cus_0_1", Channel.EMAIL, "ann@example.com", "text", subject="Hi")
    with pytest.raises(ProviderError) as caught:
        await sender.send(job, "")
    assert caught.value.retryable and caught.value.code == "network"


def test_parse_uses_declared_charsets_and_encoded_names() -> None:
    raw = {
        "from": b"=?UTF-8?B?QW5uIEzDs3Bleg==?= <Ann@Example.com>",
        "subject": "Caf\xe9".encode("latin-1"),
        "text": b"",
        "html": b"<html><head><style>p{}</style></head><body><p>Bonjour</p><p>Merci</p></body></html>",
        "headers": b"Message-ID: <abc@mail.example.com>\nSubject: x\n",
        "envelope": b'{"to":["support@parse.example.com"],"from":"bounce@example.com"}',
        "charsets": b'{"subject":"iso-8859-1","from":"UTF-8"}',
        "SPF": b"pass",  # for bounce@example.com: it vouches for Ann@Example.com's domain
    }
    entry = parse_inbound_email(decode_fields(raw), 1.0)
    assert entry.sender.value == "ann@example.com"
    assert entry.profile_name == "Ann López"
    assert entry.subject == "Café"
    assert entry.body == "Bonjour\nMerci"  # no text part: the HTML's visible text
    assert entry.provider_message_id == "abc@mail.example.com"
    assert entry.recipient == "support@parse.example.com"


def test_parse_falls_back_to_the_envelope_sender_and_refuses_garbage() -> None:
    form = {
        "from": "undisclosed",
        "envelope": '{"to":["s@p.example.com"],"from":"Ann@Example.com"}',
        "text": "hi",
    }
    assert parse_inbound_email(form, 1.0).sender.value == "ann@example.com"
    with pytest.raises(InvalidPayload) as caught:
        parse_inbound_email({"from": "nobody", "envelope": "{}"}, 1.0)
    assert caught.value.field == "from"
    with pytest.raises(InvalidPayload):
        parse_inbound_email({"from": "a@b.example", "envelope": "not json"}, 1.0)


def test_long_inbound_parts_are_cut_marked_and_their_size_kept() -> None:
    """Anyone can email us: one message stores at most MAX_STORED_TEXT + MAX_STORED_HTML characters."""
    text, html = "a" * (2 * 1024 * 1024), "<p>" + "b" * (2 * 1024 * 1024) + "</p>"
    form = {
        "from": "Ann <ann@example.com>",
        "envelope": "{}",
        "text": text,
        "html": html,
        "subject": "s" * 5000,
    }
    entry = parse_inbound_email(form, 1.0)
    assert entry.body.startswith("a" * MAX_STORED_TEXT)
    assert entry.body.endswith(f"[… truncated by Threadline: {len(text)} characters in all]")
    assert len(entry.body) < MAX_STORED_TEXT + 100 and len(entry.html) < MAX_STORED_HTML + 100
    assert entry.html.endswith(f"<!-- truncated by Threadline: {len(html)} characters in all -->")
    assert entry.attributes == {"text_truncated_from": str(len(text)), "html_truncated_from": str(len(html))}
    assert len(entry.subject) == 998


def test_short_inbound_parts_are_stored_whole() -> None:
    entry = parse_inbound_email(
        {"from": "ann@example.com", "envelope": "{}", "text": "hi", "html": "<p>hi</p>"}, 1.0
    )
    assert (entry.body, entry.html, entry.attributes) == ("hi", "<p>hi</p>", {})


@pytest.mark.parametrize(
    "spf, dkim, envelope_from, verified",
    [
        ("pass", "{@example.com : pass}", "ann@example.com", True),
        ("fail", "{@example.com : pass}", "x@attacker.example", True),  # DKIM of the sender's domain
        ("fail", "{@mail.example.com : pass, @attacker.example : fail}", "", True),  # a subdomain aligns
        ("pass", "{@attacker.example : fail}", "bounce@example.com", True),  # SPF for the sender's domain
        ("softfail", "{@example.com : fail}", "ann@example.com", False),
        ("pass", "{@attacker.example : pass}", "x@attacker.example", False),  # vouched for someone else
        ("", "", "ann@example.com", False),  # no results at all
        ("pass", "none", "ann@notexample.com", False),
    ],
)
def test_the_sender_must_be_vouched_for_by_spf_or_dkim(
    spf: str, dkim: str, envelope_from: str, verified: bool
) -> None:
    assert sender_authenticated("ann@example.com", envelope_from, spf, dkim) is verified


def test_an_unvouched_email_is_unverified_and_names_nobody() -> None:
    forged = {
        "from": "Mallory Boss <ann@example.com>",
        "envelope": '{"to": ["support@in.example"], "from": "x@attacker.example"}',
        "text": "STOP",
        "SPF": "fail",
        "dkim": "{@attacker.example : pass}",
    }
    entry = parse_inbound_email(forged, 1.0)
    assert entry.unverified and entry.profile_name == "" and entry.sender.value == "ann@example.com"
    genuine = parse_inbound_email({**forged, "SPF": "pass", "envelope": '{"from": "ann@example.com"}'}, 1.0)
    assert not genuine.unverified and genuine.profile_name == "Mallory Boss"
