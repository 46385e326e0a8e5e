"""Voice over Twilio Programmable Voice: incoming calls, spoken replies as thread entries, notification calls.

An incoming call is answered with TwiML: a greeting inside ``<Gather input="speech dtmf">``.
Each Gather posts what the caller said (``SpeechResult``/``Confidence``) or pressed
(``Digits``) to our action URL, which names the Gather's sequence number, so a call's turns
are ``CallSid:1``, ``CallSid:2``, … and each lands once as an inbound ``voice`` entry. All
TwiML comes from jinja2 templates with XML autoescaping, so no caller or business text can
break the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import msgspec
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from channels.base import InvalidPayload, ProviderError, SendResult
from channels.http import request_provider
from channels.inbound import ByCustomer, InboundEntry, Parsed, WebhookRequest, read_form
from channels.sms_twilio import read_twilio_error
from channels.twilio_webhook import TwilioWebhook, callback_ids, twiml_reply
from conversations.config import TwilioConfig, VoiceConfig
from conversations.keywords import is_voice_opt_out
from conversations.models import (
    Channel,
    ConsentRequest,
    Identifier,
    InboundMessage,
    MessageStatus,
    OutboxJob,
    StatusUpdate,
)
from conversations.normalize import InvalidIdentifier, phone_identifier
from conversations.numerals import decimal

PROVIDER = "twilio"
MAX_TWIML_CHARS = 4000  # Twilio's limit on the Twiml parameter of a call
MAX_GATHER_SEQ = 10_000  # far beyond any max_turns; a larger seq is not a URL we issued
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
OPT_OUT_DIGIT = "9"  # pressed during a notification call: no more calls of non-exempt types

_templates = ImmutableSandboxedEnvironment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # TwiML is XML: "&" or "<" in any value must arrive escaped
    undefined=StrictUndefined,
)

_STATUS_MAP = {
    "queued": MessageStatus.QUEUED,
    "initiated": MessageStatus.QUEUED,
    "ringing": MessageStatus.SENDING,
    "in-progress": MessageStatus.SENT,  # answered: the message is being spoken
    "answered": MessageStatus.SENT,
    "completed": MessageStatus.DELIVERED,
    "busy": MessageStatus.FAILED,
    "no-answer": MessageStatus.FAILED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
}
_FAILURE_MESSAGES = {
    "busy": "the line was busy",
    "no-answer": "nobody answered",
    "failed": "the call could not be placed",
    "canceled": "the call was canceled before it was answered",
}
# Said after "anything else?": the caller is done, so we close instead of asking again.
_CLOSING_PHRASES = frozenset(
    {"no", "nope", "no thanks", "no thank you", "nothing", "that's all", "that is all", "bye", "goodbye"}
)


class CallInfo(msgspec.Struct, frozen=True):
    """Who is calling whom, from an incoming-call (or Gather) webhook."""

    call_sid: str
    caller: Identifier
    called: str
    status: str


class TwilioVoiceForm(msgspec.Struct):
    """The form Twilio posts for a call, its Gather result, or its status callback (the fields we read)."""

    CallSid: str
    From: str = ""
    To: str = ""
    CallStatus: str = ""
    SpeechResult: str = ""
    Confidence: str = ""
    Digits: str = ""
    ErrorCode: str = ""


def _required(fields: TwilioVoiceForm, name: str) -> str:
    value: str = getattr(fields, name)
    if not value:
        raise InvalidPayload(f"missing field {name}", name)
    return value


def _call(fields: TwilioVoiceForm) -> CallInfo:
    call_sid = _required(fields, "CallSid")
    try:
        caller = phone_identifier(_required(fields, "From"))
    except InvalidIdentifier as exc:
        raise InvalidPayload(str(exc), "From") from exc
    return CallInfo(call_sid, caller, fields.To, fields.CallStatus)


def parse_call(form: Mapping[str, str]) -> CallInfo:
    """The call an incoming-call or Gather webhook is about."""
    return _call(read_form(form, TwilioVoiceForm))


def gather_action(gather_path: str, seq: int) -> str:
    """Where the ``seq``-th Gather of a call posts its result (relative: Twilio resolves it)."""
    return f"{gather_path}?{urlencode({'seq': seq})}"


def answer_twiml(config: VoiceConfig, gather_path: str) -> str:
    """The TwiML that answers an incoming call: the greeting inside the first Gather."""
    return _templates.get_template("voice_answer.xml.j2").render(
        action=gather_action(gather_path, 1), language=config.language, business_name=config.business_name
    )


def is_closing(text: str) -> bool:
    """Whether the caller's words mean "nothing more"."""
    return text.strip().lower().rstrip(".!") in _CLOSING_PHRASES


def opt_out_twiml(config: VoiceConfig, opted_out: bool) -> str:
    """Confirm an opt-out made in the call (or just say goodbye), then hang up."""
    return _templates.get_template("voice_opt_out.xml.j2").render(
        opted_out=opted_out, language=config.language, business_name=config.business_name
    )


def reply_twiml(config: VoiceConfig, seq: int, heard: str, gather_path: str) -> str:
    """After Gather ``seq``: acknowledge and listen again, or say goodbye and hang up; a caller
    asking us to stop calling hears the confirmation (the shard records the opt-out)."""
    if heard and is_voice_opt_out(heard):
        return opt_out_twiml(config, opted_out=True)
    done = not heard or is_closing(heard) or seq >= config.max_turns
    return _templates.get_template("voice_reply.xml.j2").render(
        action="" if done else gather_action(gather_path, seq + 1),
        language=config.language,
        business_name=config.business_name,
    )


def parse_gather(form: Mapping[str, str], seq: int, received_at: float) -> InboundMessage | None:
    """What the caller said or pressed in Gather ``seq``; None when the Gather heard nothing."""
    fields = read_form(form, TwilioVoiceForm)
    call = _call(fields)
    speech = fields.SpeechResult.strip()
    digits = fields.Digits.strip()
    if not speech and not digits:
        return None
    attributes = {"call_sid": call.call_sid, "gather": str(seq), "input": "speech" if speech else "dtmf"}
    if speech and fields.Confidence:
        attributes["confidence"] = fields.Confidence
    return InboundMessage(
        channel=Channel.VOICE,
        provider=PROVIDER,
        provider_message_id=f"{call.call_sid}:{seq}",
        sender=call.caller,
        recipient=call.called,
        body=speech or digits,
        received_at=received_at,
        attributes=attributes,
    )


def map_call_status(provider_status: str) -> MessageStatus:
    """Twilio's CallStatus onto ours; unknown values are a payload error."""
    try:
        return _STATUS_MAP[provider_status.strip().lower()]
    except KeyError:
        raise InvalidPayload(f"unknown CallStatus {provider_status!r}", "CallStatus") from None


def parse_call_status(form: Mapping[str, str], message_id: str, customer_id: str, at: float) -> StatusUpdate:
    """A call status callback as a StatusUpdate; busy/no-answer/failed carry the reason as error_code."""
    fields = read_form(form, TwilioVoiceForm)
    call_sid = _required(fields, "CallSid")
    provider_status = _required(fields, "CallStatus").strip().lower()
    status = map_call_status(provider_status)
    error_code = error_message = ""
    if status is MessageStatus.FAILED:
        error_code = provider_status
        error_message = _FAILURE_MESSAGES.get(provider_status, provider_status)
        if fields.ErrorCode:
            error_message += f" (Twilio error {fields.ErrorCode})"
    return StatusUpdate(
        channel=Channel.VOICE,
        provider=PROVIDER,
        provider_message_id=call_sid,
        message_id=message_id,
        customer_id=customer_id,
        status=status,
        provider_status=provider_status,
        at=at,
        error_code=error_code,
        error_message=error_message,
    )


class TwilioIncomingCallWebhook(TwilioWebhook):
    """Someone calls our number: greet them inside the first Gather (nothing stored yet)."""

    def __init__(self, auth_token: str, config: VoiceConfig, gather_path: str) -> None:
        super().__init__(auth_token)
        self._config = config
        self._gather_path = gather_path

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        parse_call(request.form)
        return Parsed(reply=twiml_reply(answer_twiml(self._config, self._gather_path)))


class TwilioGatherWebhook(TwilioIncomingCallWebhook):
    """What the caller said (or pressed) becomes a voice entry once per turn; then we answer."""

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        seq = decimal(request.query.get("seq", ""), MAX_GATHER_SEQ)
        if not seq:
            raise InvalidPayload(
                "Gather action URL lacks its sequence number", "seq", code="invalid_callback_url"
            )
        entry = parse_gather(request.form, seq, now)
        reply = twiml_reply(reply_twiml(self._config, seq, entry.body if entry else "", self._gather_path))
        if entry is None:
            return Parsed(reply=reply)
        return Parsed([InboundEntry(entry, f"twilio:voice:{entry.provider_message_id}", entry.sender)], reply)


class TwilioCallStatusWebhook(TwilioWebhook):
    """Status callbacks for our notification calls: our ids ride in the callback URL's query."""

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        message_id, customer_id = callback_ids(request)
        entry = parse_call_status(request.form, message_id, customer_id, now)
        dedupe = f"twilio:callstatus:{entry.provider_message_id}:{entry.provider_status}"
        return Parsed([InboundEntry(entry, dedupe, ByCustomer(customer_id))], twiml_reply())


def notification_twiml(message: str, language: str, opt_out_action: str = "") -> str:
    """``<Response><Say>message</Say></Response>`` with the message XML-escaped; with an opt-out
    action, then a one-key Gather offering to stop these calls."""
    return _templates.get_template("voice_notification.xml.j2").render(
        message=message, language=language, opt_out_action=opt_out_action, opt_out_digit=OPT_OUT_DIGIT
    )


class TwilioCallOptOutWebhook(TwilioWebhook):
    """The key a callee pressed after a notification call: ``OPT_OUT_DIGIT`` opts them out of
    voice (an ``ConsentRequest`` for their home shard); the TwiML confirms in the call."""

    def __init__(self, auth_token: str, config: VoiceConfig) -> None:
        super().__init__(auth_token)
        self._config = config

    def parse(self, request: WebhookRequest, now: float) -> Parsed:
        message_id, customer_id = callback_ids(request)
        fields = read_form(request.form, TwilioVoiceForm)
        call_sid = _required(fields, "CallSid")
        if fields.Digits.strip() != OPT_OUT_DIGIT:
            return Parsed(reply=twiml_reply(opt_out_twiml(self._config, opted_out=False)))
        entry = ConsentRequest(
            customer_id, Channel.VOICE, f"voice_dtmf:{OPT_OUT_DIGIT}", now, None, message_id
        )
        reply = twiml_reply(opt_out_twiml(self._config, opted_out=True))
        return Parsed(
            [InboundEntry(entry, f"twilio:voice:opt-out:{call_sid}", ByCustomer(customer_id))], reply
        )


class _TwilioCall(msgspec.Struct):
    sid: str
    status: str = "queued"


_decode_call = msgspec.json.Decoder(_TwilioCall).decode


class TwilioVoiceSender:
    """Places notification calls through Twilio's Calls API (or the simulator speaking it)."""

    channel = Channel.VOICE
    provider = PROVIDER

    def __init__(
        self, session: aiohttp.ClientSession, twilio: TwilioConfig, voice: VoiceConfig, base_url: str
    ) -> None:
        self._session = session
        self._twilio = twilio
        self._voice = voice
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{twilio.account_sid}/Calls.json"
        self._auth = aiohttp.BasicAuth(twilio.account_sid, twilio.auth_token)

    async def send(self, job: OutboxJob, status_callback_url: str) -> SendResult:
        twiml = notification_twiml(job.body, self._voice.language, job.opt_out_url)
        if len(twiml) > MAX_TWIML_CHARS:
            raise ProviderError(
                f"the spoken message is {len(twiml)} characters of TwiML; Twilio takes {MAX_TWIML_CHARS}",
                code="twiml_too_long",
            )
        form = [
            ("To", job.address),
            ("From", self._twilio.from_number),
            ("Twiml", twiml),
            ("StatusCallback", status_callback_url),
            ("StatusCallbackMethod", "POST"),
            *(("StatusCallbackEvent", event) for event in STATUS_CALLBACK_EVENTS),
        ]
        body = await request_provider(
            self._session, "POST", self._url, data=form, auth=self._auth, read_error=read_twilio_error
        )
        call = _decode_call(body)
        return SendResult(
            provider=PROVIDER,
            provider_message_id=call.sid,
            status=_STATUS_MAP.get(call.status, MessageStatus.QUEUED),
            segments=0,
        )
