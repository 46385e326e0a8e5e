"""The console's WebSocket frames: JSON objects tagged by ``type`` (see docs/console-protocol.md).

Every client frame may carry a ``ref``; the server echoes it on the ``ack``, ``thread`` or
``error`` frame that answers it, so a client can match answers to requests.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from conversations.console import ConversationSummary, UpdateReason
from conversations.models import Channel
from conversations.thread import ThreadEntryView

Queue = Literal["unassigned", "mine", "all"]
CustomerId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Ref = Annotated[str, msgspec.Meta(max_length=100)]
AgentName = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]

MAX_REPLY_CHARS = 1600
MAX_NOTE_CHARS = 4000


class _ClientFrame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    ref: Ref = ""


# --- client -> server ---------------------------------------------------------------------


class Auth(_ClientFrame, tag="auth"):
    """First frame when the upgrade request carried no ``Authorization`` header."""

    token: str


class Subscribe(_ClientFrame, tag="subscribe"):
    """Receive updates for these queues; ``resume_from`` replays what was missed since that event."""

    queues: Annotated[list[Queue], msgspec.Meta(min_length=1)]
    resume_from: str | None = None


class Open(_ClientFrame, tag="open"):
    """Ask for a thread: the latest entries, or those after ``cursor``."""

    customer_id: CustomerId
    cursor: str | None = None


class Claim(_ClientFrame, tag="claim"):
    customer_id: CustomerId


class Release(_ClientFrame, tag="release"):
    customer_id: CustomerId


class Transfer(_ClientFrame, tag="transfer"):
    customer_id: CustomerId
    to_agent: AgentName


class Reply(_ClientFrame, tag="reply"):
    """Send ``text`` to the customer; ``channel`` defaults to the customer's last channel."""

    customer_id: CustomerId
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REPLY_CHARS)]
    channel: Channel | None = None


class Note(_ClientFrame, tag="note"):
    """An internal note on the thread; never sent to the customer."""

    customer_id: CustomerId
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NOTE_CHARS)]


class Typing(_ClientFrame, tag="typing"):
    customer_id: CustomerId


class Resolve(_ClientFrame, tag="resolve"):
    customer_id: CustomerId


class Handback(_ClientFrame, tag="handback"):
    """Return the conversation to automation (journeys resume)."""

    customer_id: CustomerId


ClientFrame = (
    Auth | Subscribe | Open | Claim | Release | Transfer | Reply | Note | Typing | Resolve | Handback
)


# --- server -> client -----------------------------------------------------------------------


class Welcome(msgspec.Struct, tag_field="type", tag="welcome"):
    """Sent once the agent is authenticated."""

    agent: str
    channels: list[Channel]  # channels a reply may use
    agents: list[str]  # transfer targets


class QueueSnapshot(msgspec.Struct, tag_field="type", tag="queue"):
    """The conversations of the subscribed queues, newest first, as of ``event_id``."""

    queues: list[Queue]
    conversations: list[ConversationSummary]
    event_id: str
    resync: bool = False  # True when a resume was impossible (events trimmed): replace the list


class ConversationUpdated(msgspec.Struct, tag_field="type", tag="conversation.updated"):
    """A conversation changed; ``conversation`` is its state now."""

    event_id: str
    reason: UpdateReason
    conversation: ConversationSummary
    agent: str = ""


class ThreadFrame(msgspec.Struct, tag_field="type", tag="thread"):
    """A page of a thread: the answer to ``open``."""

    customer_id: str
    entries: list[ThreadEntryView]
    conversation: ConversationSummary
    next_cursor: str | None = None
    truncated: bool = False  # older entries exist that this page leaves out
    ref: str = ""


class TypingFrame(msgspec.Struct, tag_field="type", tag="typing"):
    customer_id: str
    agent: str


class Ack(msgspec.Struct, tag_field="type", tag="ack", omit_defaults=True):
    """A request succeeded."""

    op: str
    ref: str = ""
    customer_id: str = ""
    message_id: str = ""  # reply: the outbound message; note: the note id
    event_id: str = ""
    duplicate: bool = False
    more: bool = False  # subscribe: the replay has more pages; resume from ``event_id`` for the next


class ErrorFrame(msgspec.Struct, tag_field="type", tag="error", omit_defaults=True):
    """A request failed, or a frame could not be read; the socket stays open."""

    code: str
    message: str
    ref: str = ""


ServerFrame = Welcome | QueueSnapshot | ConversationUpdated | ThreadFrame | TypingFrame | Ack | ErrorFrame

decode_client_frame = msgspec.json.Decoder(ClientFrame).decode
encode_frame = msgspec.json.Encoder().encode


class TypingSignal(msgspec.Struct, frozen=True):
    """What gateways publish to each other about typing (ephemeral, pub/sub)."""

    customer_id: str
    agent: str
