"""Consent keywords on every channel a customer can write or speak on (pure: no I/O).

SMS, WhatsApp and RCS take Twilio's default single-word lists (case-insensitive), typed or
sent as a button/suggestion payload. WhatsApp adds Meta's marketing opt-out quick reply
("Stop promotions"), which stops marketing only. An email reply is read by its subject or its
first line (what a "reply with UNSUBSCRIBE" or a ``mailto:`` List-Unsubscribe sends). A call
takes spoken phrases ("stop calling", "do not call me"); the call confirms in its own TwiML.
"""

from __future__ import annotations

import enum
import re

import msgspec

from conversations.models import Channel, InboundMessage

OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
# Meta's marketing opt-out button on marketing templates, and its "resume" counterpart.
WHATSAPP_STOP_PROMOTIONS = "stop promotions"
WHATSAPP_RESUME_PROMOTIONS = "resume promotions"
VOICE_OPT_OUT_PHRASES = (
    "stop calling",
    "stop calling me",
    "don't call me",
    "do not call me",
    "do not call",
    "don't call",
    "never call me",
    "remove me from your list",
    "remove me from your call list",
    "unsubscribe",
    "stop",
)
TYPED_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.RCS})
_WORDS = re.compile(r"[^a-z' ]+")
_QUOTED_REPLY = re.compile(r"^(>|on .+ wrote:$)", re.IGNORECASE)


class Keyword(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


class KeywordReplies(msgspec.Struct, forbid_unknown_fields=True):
    """What we answer to each keyword (configurable per business)."""

    opt_out: str = (
        "You are unsubscribed and will get no more messages from us here. Text START to resubscribe."
    )
    opt_in: str = "You are subscribed again. Text STOP to unsubscribe, HELP for help."
    help: str = "Threadline support: reply to this message to reach us. Text STOP to unsubscribe."
    marketing_opt_out: str = "You will get no more offers from us here. Service messages continue."
    marketing_opt_in: str = "Offers from us are back on. Tap Stop promotions any time."

    def for_keyword(self, keyword: Keyword, message_type: str | None = None) -> str:
        if message_type == "marketing" and keyword is not Keyword.HELP:
            return self.marketing_opt_out if keyword is Keyword.OPT_OUT else self.marketing_opt_in
        return {Keyword.OPT_OUT: self.opt_out, Keyword.OPT_IN: self.opt_in, Keyword.HELP: self.help}[keyword]


class ConsentKeyword(msgspec.Struct, frozen=True):
    """A keyword found in an inbound message, with what it changes and how it is answered."""

    keyword: Keyword
    source: str  # for the consent log: "<channel>_keyword:STOP", "whatsapp_button:stop_promotions", …
    message_type: str | None = None  # None: the whole channel (every non-exempt type)
    confirm_by_message: bool = True  # False on a call: the call's own TwiML says it


def classify(body: str) -> tuple[Keyword, str] | None:
    """The keyword a message body is, with the word itself; None for ordinary text."""
    word = body.strip().upper()
    if word in OPT_OUT_WORDS:
        return Keyword.OPT_OUT, word
    if word in OPT_IN_WORDS:
        return Keyword.OPT_IN, word
    if word in HELP_WORDS:
        return Keyword.HELP, word
    return None


def is_voice_opt_out(speech: str) -> bool:
    """Whether what a caller said asks us to stop calling."""
    said = " ".join(_WORDS.sub(" ", speech.lower()).split())
    return said in VOICE_OPT_OUT_PHRASES


def first_line(text: str) -> str:
    """An email reply's own first line (quoted history and blank lines skipped)."""
    for line in text.splitlines():
        line = line.strip()
        if line and not _QUOTED_REPLY.match(line):
            return line
    return ""


def _typed(entry: InboundMessage) -> ConsentKeyword | None:
    if entry.channel is Channel.WHATSAPP and entry.reply_payload:
        # The button's text is Meta's ("Stop promotions"); its payload is the business's own.
        button = entry.body.strip().lower()
        if button in (WHATSAPP_STOP_PROMOTIONS, WHATSAPP_RESUME_PROMOTIONS):
            keyword = Keyword.OPT_OUT if button == WHATSAPP_STOP_PROMOTIONS else Keyword.OPT_IN
            return ConsentKeyword(keyword, f"whatsapp_button:{button.replace(' ', '_')}", "marketing")
    for text, how in ((entry.body, "keyword"), (entry.reply_payload, "button")):
        found = classify(text) if text else None
        if found is not None:
            return ConsentKeyword(found[0], f"{entry.channel.value}_{how}:{found[1]}")
    return None


def _email(entry: InboundMessage) -> ConsentKeyword | None:
    subject = entry.subject.strip()
    for text in (subject.removeprefix("Re:").removeprefix("RE:").strip(), first_line(entry.body)):
        found = classify(text) if text else None
        if found is not None:
            return ConsentKeyword(found[0], f"email_reply:{found[1]}")
    return None


def _voice(entry: InboundMessage) -> ConsentKeyword | None:
    if entry.attributes.get("input") == "speech" and is_voice_opt_out(entry.body):
        return ConsentKeyword(Keyword.OPT_OUT, "voice_speech:stop_calling", confirm_by_message=False)
    return None


def consent_keyword(entry: InboundMessage) -> ConsentKeyword | None:
    """The consent keyword ``entry`` is on its channel, or None for ordinary text."""
    if entry.channel in TYPED_CHANNELS:
        return _typed(entry)
    if entry.channel is Channel.EMAIL:
        return _email(entry)
    if entry.channel is Channel.VOICE:
        return _voice(entry)
    return None
