"""Conversation sessions: a customer's session spans channels, opens on first contact and closes
after an idle gap (or when an agent resolves the conversation)."""

from __future__ import annotations

from dataclasses import dataclass

from conversations.ids import ulid

SESSION_FIELDS = ("session_id", "session_last_at")


@dataclass(slots=True)
class Session:
    id: str
    last_at: float


def session_for(current: Session | None, at: float, idle_seconds: float) -> tuple[Session, bool]:
    """The session a message at ``at`` belongs to, and whether it opens a new one."""
    if current is None or at - current.last_at > idle_seconds:
        return Session("ses_" + ulid(at), at), True
    current.last_at = max(current.last_at, at)
    return current, False


def parse_session(values: list[bytes | None]) -> Session | None:
    session_id, last_at = values
    if not session_id or not last_at:
        return None
    return Session(session_id.decode(), float(last_at))
