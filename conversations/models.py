"""Typed records that cross a boundary: ingest entries, thread events, stored messages."""

from __future__ import annotations

import enum

import msgspec


class Channel(enum.StrEnum):
    """A way to reach a customer."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    RCS = "rcs"
    VOICE = "voice"
    EMAIL = "email"


class Direction(enum.StrEnum):
    """Who sent a message: the customer (inbound) or the business (outbound)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageStatus(enum.StrEnum):
    """Lifecycle of a message, provider statuses mapped onto one vocabulary."""

    ACCEPTED = "accepted"  # taken by Threadline, not yet handed to a provider
    QUEUED = "queued"  # the provider took it
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    RECEIVED = "received"  # inbound messages


class IdentifierKind(enum.StrEnum):
    """The kinds of handle a customer can be found by."""

    PHONE = "phone"
    EMAIL = "email"
    WA_ID = "wa_id"
    RCS = "rcs"
    EXTERNAL_ID = "external_id"


class Identifier(msgspec.Struct, frozen=True):
    """One normalised handle of a customer, e.g. phone +15550100000."""

    kind: IdentifierKind
    value: str


class Media(msgspec.Struct, frozen=True, omit_defaults=True):
    """An attachment carried by a message (MMS, WhatsApp image, …)."""

    url: str
    content_type: str = ""
    id: str = ""  # the provider's media id, when it hands out ids instead of URLs (WhatsApp)


class Location(msgspec.Struct, frozen=True):
    """A place a customer shared (WhatsApp location message)."""

    latitude: float
    longitude: float
    name: str = ""
    address: str = ""


class TemplateRef(msgspec.Struct, frozen=True):
    """An approved provider template (WhatsApp) and the values of its body variables, in order."""

    name: str
    language: str = "en_US"
    variables: tuple[str, ...] = ()


class Suggestion(msgspec.Struct, frozen=True, omit_defaults=True):
    """A tappable chip on a rich card: a reply (``postback_data``) or, with ``url``, an open-URL action."""

    text: str
    postback_data: str = ""
    url: str = ""


class RichCard(msgspec.Struct, frozen=True, omit_defaults=True):
    """Channel-neutral rich content (an RCS standalone card; adapted to text elsewhere)."""

    title: str = ""
    description: str = ""
    media_url: str = ""
    suggestions: tuple[Suggestion, ...] = ()


# --- ingest entries: what the gateway writes to a shard's ingest stream ---------------


class InboundMessage(msgspec.Struct, tag="inbound", frozen=True):
    """A message a customer sent us, parsed from a provider webhook."""

    channel: Channel
    provider: str
    provider_message_id: str
    sender: Identifier
    recipient: str
    body: str
    received_at: float
    media: tuple[Media, ...] = ()
    profile_name: str = ""
    # Provider extras that are not the text: RCS postback data, a location, speech confidence.
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    location: Location | None = None
    reply_payload: str = ""  # the id/payload of the button or list row the customer chose
    subject: str = ""  # email
    html: str = ""  # email


class StatusUpdate(msgspec.Struct, tag="status", frozen=True):
    """A provider's report on one of our outbound messages.

    ``message_id``/``customer_id`` are empty when the provider's callback does not carry our
    ids (WhatsApp, RCS): the shard then finds the message by ``provider_message_id``, and
    ``recipient`` (the customer's handle) picks the shard to ask.
    """

    channel: Channel
    provider: str
    provider_message_id: str
    status: MessageStatus
    provider_status: str
    at: float
    message_id: str = ""
    customer_id: str = ""
    recipient: Identifier | None = None
    error_code: str = ""
    error_message: str = ""
    attempt: int = 0  # how often it was parked waiting for its message to be known


class OutboundRequest(msgspec.Struct, tag="outbound", frozen=True):
    """A backend asked us to send a message to a customer."""

    message_id: str
    recipient: Identifier
    body: str
    message_type: str
    requested_at: float
    channel: Channel | None = None
    rich_card: RichCard | None = None
    template: TemplateRef | None = None
    subject: str = ""  # email
    html: str = ""  # email: the HTML part; ``body`` is the text part
    template_kind: str = ""  # the message kind the content was rendered from, if any
    track: bool = False  # rewrite links (and add an open pixel to HTML) for engagement tracking


class EngagementKind(enum.StrEnum):
    """What a customer did with a message we sent."""

    OPENED = "opened"
    CLICKED = "clicked"


class Engagement(msgspec.Struct, tag="engagement", frozen=True):
    """A customer opened (tracking pixel) or clicked a tracked link of one of our messages."""

    message_id: str
    customer_id: str
    kind: EngagementKind
    at: float
    url: str = ""


class OutboundContent(msgspec.Struct, frozen=True):
    """An outbound message's content as it will be sent, with what it costs to send."""

    body: str
    html: str = ""
    segments: int = 0
    encoding: str = ""
    cost: float | None = None


class Forwarded(msgspec.Struct, tag="forwarded", frozen=True):
    """An entry that arrived on one shard but belongs to a customer homed on another."""

    customer_id: str
    entry: InboundMessage | OutboundRequest | StatusUpdate | SendOutcome | Engagement


class SendOutcome(msgspec.Struct, tag="sent", frozen=True):
    """What happened when the shard's sender handed an outbox job to a provider."""

    message_id: str
    customer_id: str
    provider: str
    status: MessageStatus
    at: float
    provider_message_id: str = ""
    error_code: str = ""
    error_message: str = ""
    segments: int = 0
    price: float | None = None
    # Set when the sender had to use another channel (e.g. RCS not capable → SMS): what was
    # actually sent, on which channel, and why.
    channel: Channel | None = None
    fallback_from: Channel | None = None
    fallback_reason: str = ""
    body: str = ""


IngestEntry = InboundMessage | StatusUpdate | OutboundRequest | Forwarded | SendOutcome | Engagement


# --- stored records -------------------------------------------------------------------


class StatusChange(msgspec.Struct, frozen=True):
    """One step in a message's status history."""

    status: MessageStatus
    at: float
    provider_status: str = ""
    error_code: str = ""


class MessageRecord(msgspec.Struct, kw_only=True):
    """The current state of one message, inbound or outbound."""

    id: str
    customer_id: str
    channel: Channel
    direction: Direction
    body: str
    status: MessageStatus
    created_at: float
    updated_at: float
    message_type: str = ""
    provider: str = ""
    provider_message_id: str = ""
    error_code: str = ""
    error_message: str = ""
    segments: int = 0
    price: float | None = None
    address: str = ""  # the customer's address on this channel
    media: tuple[Media, ...] = ()
    location: Location | None = None
    reply_payload: str = ""
    template: TemplateRef | None = None
    history: list[StatusChange] = msgspec.field(default_factory=list)
    attributes: dict[str, str] = msgspec.field(default_factory=dict)
    rich_card: RichCard | None = None
    fallback_from: Channel | None = None  # the channel asked for, when it was adapted to ``channel``
    fallback_reason: str = ""
    subject: str = ""  # email
    html: str = ""  # email
    template_kind: str = ""
    encoding: str = ""  # SMS: GSM-7 or UCS-2
    cost: float | None = None  # our estimate from the price table (``price`` is what the provider says)
    opened_at: float | None = None
    clicks: int = 0


class Customer(msgspec.Struct, kw_only=True):
    """A person we talk to, whatever the channel."""

    id: str
    created_at: float
    identifiers: list[Identifier] = msgspec.field(default_factory=list)


class OutboxJob(msgspec.Struct, frozen=True):
    """One provider send, identified by the message it carries."""

    message_id: str
    customer_id: str
    channel: Channel
    address: str
    body: str
    rich_card: RichCard | None = None
    template: TemplateRef | None = None
    subject: str = ""  # email
    html: str = ""  # email


# --- thread events: the customer's history stream ---------------------------------------


class MessageLogged(msgspec.Struct, tag="message", frozen=True):
    """A message (either direction) joined the thread."""

    message_id: str
    channel: Channel
    direction: Direction
    at: float
    session_id: str = ""


class StatusLogged(msgspec.Struct, tag="status", frozen=True):
    """A message's status changed."""

    message_id: str
    channel: Channel
    status: MessageStatus
    at: float
    error_code: str = ""


class EngagementLogged(msgspec.Struct, tag="engagement", frozen=True):
    """The customer opened a message or clicked one of its links."""

    message_id: str
    channel: Channel
    kind: EngagementKind
    at: float
    url: str = ""


class NoteLogged(msgspec.Struct, tag="note", frozen=True):
    """An agent's internal note on the thread: shown to agents, never sent to the customer."""

    note_id: str
    agent: str
    body: str
    at: float


ThreadEvent = MessageLogged | StatusLogged | EngagementLogged | NoteLogged
