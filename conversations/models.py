"""Typed records that cross a boundary: ingest entries, thread events, stored messages."""

from __future__ import annotations

import enum
from typing import Any

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
    # The provider could not vouch for the sender (email failing both SPF and DKIM): stored and
    # shown, marked, but it changes neither consent nor names.
    unverified: bool = False


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
    campaign_id: str = ""
    budget: float | None = None  # the campaign's total spend cap, in the price table's currency
    # The template's variables: each attempt renders ``template_kind`` for its own channel.
    variables: dict[str, Any] = msgspec.field(default_factory=dict)
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
    subject: str = ""  # email: when the attempt rendered its own
    # Where the customer stops this kind of message in one step: an email's one-click
    # List-Unsubscribe URL, a call's opt-out key action; empty for transactional messages.
    opt_out_url: str = ""


class EventReceived(msgspec.Struct, tag="event", frozen=True):
    """A backend reported something the customer did (``cart_abandoned``, ``purchase_completed``).

    ``customer`` picks the shard like an inbound sender does; it is None when the backend named
    the customer by id (the entry then travels inside a Forwarded to the home shard).
    """

    event_id: str
    name: str
    occurred_at: float
    received_at: float
    customer: Identifier | None = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


class JourneyTimer(msgspec.Struct, tag="journey_timer", frozen=True):
    """A journey wait (or handoff timeout) came due; ``token`` tells stale timers apart."""

    customer_id: str
    journey: str
    instance_id: str
    token: int


class JourneyHandback(msgspec.Struct, tag="journey_handback", frozen=True):
    """An agent handed the customer back to automation: paused journeys resume."""

    customer_id: str
    at: float
    agent: str = ""


class AgentNote(msgspec.Struct, tag="agent_note", frozen=True):
    """An agent wrote an internal note on the customer's thread (never sent to the customer)."""

    customer_id: str
    note_id: str
    agent: str
    body: str
    at: float


class ConsentRequest(msgspec.Struct, tag="consent_request", frozen=True):
    """A customer changed consent outside a conversation: a one-click List-Unsubscribe, a key
    pressed in a call, WhatsApp's own "stop/resume marketing" setting. Applied by the home shard
    like a keyword; confirmed where it was asked (the page, the call, WhatsApp itself), so no
    message answers it. ``customer`` names them when the provider knows only their handle."""

    customer_id: str  # "" when only ``customer`` is known
    channel: Channel
    source: str  # for the consent log: "email_list_unsubscribe", "voice_dtmf:9", …
    at: float
    message_type: str | None = None  # None: the whole channel (every non-exempt type)
    message_id: str = ""  # the message the customer answered, when there is one
    opted_out: bool = True  # False: they opted back in
    customer: Identifier | None = None


class Forwarded(msgspec.Struct, tag="forwarded", frozen=True):
    """An entry that arrived on one shard but belongs to a customer homed on another."""

    customer_id: str
    entry: ShardEntry


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


class RoutingTimerKind(enum.StrEnum):
    """What a routing timer is for."""

    DEFERRED = "deferred"  # a held send is due for a fresh decision
    TIMEOUT = "timeout"  # a fallback step had no success in time
    FOLLOW_UP = "follow_up"  # mode "all": a delayed step starts


class RoutingTimer(msgspec.Struct, tag="route_timer", frozen=True):
    """A routing timer came due: a deferred send, a step timeout, or a delayed follow-up step."""

    message_id: str
    customer_id: str
    kind: RoutingTimerKind
    attempt_id: str = ""
    step: int = 0


class SegmentTimer(msgspec.Struct, tag="segment_timer", frozen=True):
    """A customer's segment membership may change by time alone now (a window slid past);
    ``everything``: re-evaluate every segment (their facts changed wholesale, e.g. a merge)."""

    customer_id: str
    due: float
    everything: bool = False


class SegmentBackfill(msgspec.Struct, tag="segment_backfill", frozen=True):
    """Evaluate a new or changed segment over the next chunk of this shard's customers.

    ``cursor`` is the shard's SCAN cursor over its customer hashes ("0" to start); the entry
    that finishes a chunk queues the next one in the same transaction, so progress is durable.
    """

    segment: str
    version: int
    cursor: str = "0"


# Everything a shard applies; an ingest stream also carries these wrapped in ``Forwarded``.
ShardEntry = (
    InboundMessage
    | StatusUpdate
    | OutboundRequest
    | SendOutcome
    | Engagement
    | RoutingTimer
    | EventReceived
    | JourneyTimer
    | JourneyHandback
    | AgentNote
    | ConsentRequest
    | SegmentTimer
    | SegmentBackfill
)
IngestEntry = ShardEntry | Forwarded


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
    routing: Routing | None = None  # outbound messages: the decision and its attempts
    parent_id: str = ""  # an attempt: the message it carries


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
    opt_out_url: str = ""  # see OutboundContent.opt_out_url


# --- routing: why a channel was chosen, and how the fallback chain went -------------------


class SkipReason(enum.StrEnum):
    """Why routing left a channel out (or held the whole send)."""

    OPTED_OUT = "opted_out"
    OUTSIDE_WINDOW = "outside_window"
    NOT_CAPABLE = "not_capable"
    UNREACHABLE = "unreachable"
    QUIET_HOURS = "quiet_hours"
    TOO_EXPENSIVE = "too_expensive"
    FREQUENCY_CAP = "frequency_cap"
    CHANNEL_UNAVAILABLE = "channel_unavailable"
    NOT_ENGAGED = "not_engaged"
    SEND_TIME = "send_time"


class DecisionOutcome(enum.StrEnum):
    SEND = "send"
    DEFER = "defer"
    REFUSE = "refuse"


class RouteMode(enum.StrEnum):
    """How a chain is walked."""

    FALLBACK = "fallback"  # the next step on a failure or a timeout
    ALL = "all"  # every step is sent (each after its delay)


class RouteOrder(enum.StrEnum):
    """How the chain was ordered."""

    PINNED = "pinned"
    CHEAPEST = "cheapest"


class RoutingState(enum.StrEnum):
    """Where a message's routing stands."""

    DEFERRED = "deferred"
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    EXHAUSTED = "exhausted"
    REFUSED = "refused"


class AttemptOutcome(enum.StrEnum):
    """How one attempt ended (so far)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LATE_SUCCESS = "late_success"  # succeeded after routing had already moved on


class RoutingEvent(enum.StrEnum):
    """What routing did, as logged in the thread."""

    DECIDED = "decided"
    DEFERRED = "deferred"
    REFUSED = "refused"
    ATTEMPT = "attempt"
    TIMEOUT = "timeout"
    FALLBACK = "fallback"
    SKIPPED = "skipped"  # a later step no longer allowed when its turn came (e.g. consent withdrawn)
    SUCCEEDED = "succeeded"
    LATE_DELIVERY = "late_delivery"
    EXHAUSTED = "exhausted"


class SkippedChannel(msgspec.Struct, frozen=True):
    """A channel routing did not use, and why."""

    channel: Channel
    reason: SkipReason
    detail: str = ""


class RouteStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a chain: where to send, what counts as success, how long to wait for it."""

    channel: Channel
    address: str
    success: MessageStatus
    timeout: float
    price: float | None = None
    template: str = ""
    adapt: bool = False
    delay: float = 0.0  # mode "all": start this long after the decision
    # Taken only after the previous step failed with one of these codes (empty: always).
    only_after: tuple[str, ...] = ()


class RoutingDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What routing decided for one message, with a reason for every channel it left out."""

    message_type: str
    outcome: DecisionOutcome
    chosen: Channel | None
    chain: tuple[RouteStep, ...]
    skipped: tuple[SkippedChannel, ...] = ()
    mode: RouteMode = RouteMode.FALLBACK
    order: RouteOrder = RouteOrder.PINNED
    hold: SkipReason | None = None  # why the whole send waits or is dropped (quiet hours, cap)
    deferred_until: float | None = None
    country: str = ""
    currency: str = ""
    decided_at: float = 0.0


class RouteRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What routing needs to know about the message itself."""

    message_id: str
    message_type: str
    body: str
    recipient: Identifier
    channel: Channel | None = None  # the caller pinned one channel
    media: tuple[Media, ...] = ()
    campaign_id: str = ""
    budget: float | None = None
    track: bool = False  # rewrite links for click tracking when the attempt is rendered
    whatsapp_template: str = ""  # an approved template for this message (the caller's or its type's)
    template_kind: str = ""  # rendered per attempt for the attempt's channel, with ``variables``
    variables: dict[str, Any] = msgspec.field(default_factory=dict)


class RouteAttempt(msgspec.Struct, kw_only=True):
    """One send of the message on one channel (its own outbox job and message record)."""

    id: str
    step: int
    channel: Channel
    started_at: float
    status: MessageStatus = MessageStatus.ACCEPTED
    outcome: AttemptOutcome = AttemptOutcome.PENDING
    error_code: str = ""


class Routing(msgspec.Struct, kw_only=True):
    """A message's routing: the request, the latest decision, the attempts so far."""

    request: RouteRequest
    decision: RoutingDecision
    state: RoutingState = RoutingState.ACTIVE
    attempts: list[RouteAttempt] = msgspec.field(default_factory=list)
    next_step: int = 0


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


class RoutingLogged(msgspec.Struct, tag="routing", frozen=True, kw_only=True):
    """Routing did something for a message: decided, deferred, started an attempt, fell back, …"""

    message_id: str
    channel: Channel
    at: float
    event: RoutingEvent
    attempt_id: str = ""
    detail: str = ""
    decision: RoutingDecision | None = None


class EventLogged(msgspec.Struct, tag="event", frozen=True):
    """A backend event (``cart_abandoned``, …) joined the customer's history."""

    event_id: str
    name: str
    at: float
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


ThreadEvent = MessageLogged | StatusLogged | EngagementLogged | NoteLogged | RoutingLogged | EventLogged
