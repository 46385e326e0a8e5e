"""SMS compliance keywords (Twilio's default lists): single word, case-insensitive."""

from __future__ import annotations

import enum

import msgspec

OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


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

    def for_keyword(self, keyword: Keyword) -> str:
        return {Keyword.OPT_OUT: self.opt_out, Keyword.OPT_IN: self.opt_in, Keyword.HELP: self.help}[keyword]


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
