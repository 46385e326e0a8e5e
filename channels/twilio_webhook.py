"""What every Twilio webhook shares: signed form POSTs, our ids in callback URLs, TwiML replies."""

from __future__ import annotations

from typing import ClassVar

from channels.base import InvalidPayload, WebhookRejected
from channels.inbound import BodyKind, InboundAdapter, WebhookReply, WebhookRequest
from channels.twilio_signature import algorithm_from_settings, is_valid_signature
from conversations.ids import home_slot_of

PROVIDER = "twilio"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SIGNATURE_HEADER = "X-Twilio-Signature"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def twiml_reply(body: str = EMPTY_TWIML) -> WebhookReply:
    """A TwiML document as the webhook's answer (Twilio reads it; empty means "do nothing")."""
    return WebhookReply(body.encode(), "text/xml")


def callback_ids(request: WebhookRequest) -> tuple[str, str]:
    """Our message id and customer id, from the query of a status callback URL we set."""
    message_id = request.query.get("mid", "")
    customer_id = request.query.get("cid", "")
    if not message_id or home_slot_of(customer_id) is None:
        raise InvalidPayload("status callback URL lacks our mid/cid", "cid", code="invalid_callback_url")
    return message_id, customer_id


class TwilioWebhook(InboundAdapter):
    """A Twilio webhook: form-encoded, signed with X-Twilio-Signature over the URL and the form."""

    provider = PROVIDER
    body_kind: ClassVar[BodyKind] = BodyKind.FORM
    content_types: ClassVar[tuple[str, ...]] = FORM_TYPES

    def __init__(self, auth_token: str) -> None:
        self._auth_token = auth_token

    def verify(self, request: WebhookRequest) -> None:
        algorithm = algorithm_from_settings(request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
        signature = request.headers.get(SIGNATURE_HEADER)
        if not is_valid_signature(self._auth_token, request.url, request.form.items(), signature, algorithm):
            code = "signature_missing" if not signature else "signature_invalid"
            raise WebhookRejected(code, f"{SIGNATURE_HEADER} is missing or does not match this request")
