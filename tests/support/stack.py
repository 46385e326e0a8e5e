"""The whole Threadline stack, started once per test session on real ports."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from channels.simulator.fixed_credentials import (
    SIMULATOR_ACCOUNT_SID,
    SIMULATOR_AUTH_TOKEN,
    SIMULATOR_RBM_ACCESS_TOKEN,
    SIMULATOR_RBM_AGENT_ID,
    SIMULATOR_RBM_CLIENT_TOKEN,
    SIMULATOR_WHATSAPP_ACCESS_TOKEN,
    SIMULATOR_WHATSAPP_APP_SECRET,
    SIMULATOR_WHATSAPP_PHONE_NUMBER_ID,
    SIMULATOR_WHATSAPP_VERIFY_TOKEN,
)
from channels.twilio_signature import compute_signature
from conversations.config import (
    Config,
    EmailConfig,
    PricesConfig,
    RbmConfig,
    TrackingConfig,
    TwilioConfig,
    VoiceConfig,
    WhatsAppConfig,
    WhatsAppTemplate,
)
from conversations.models import Channel
from conversations.routing.policy import DEFAULT_POLICY_PATH
from tests.support.wait import eventually as eventually  # re-exported: the tests import it from here

API_KEY = "test-api-key-" + uuid.uuid4().hex[:8]
EMAIL_INBOUND_SECRET = "test-inbound-" + uuid.uuid4().hex[:8]
ADMIN_API_KEY = "test-admin-key-" + uuid.uuid4().hex[:8]


def wall_clock_free_policy() -> str:
    """The default routing policy without quiet hours, written to a temp file.

    The shared stack runs on the wall clock; quiet hours (21:00-08:00 for marketing) would make
    end-to-end results depend on when the suite runs. Quiet hours are tested with an injected
    clock in tests/conversations/routing/test_routing_*.py.
    """
    text = DEFAULT_POLICY_PATH.read_text().replace("quiet_hours = true", "quiet_hours = false")
    assert "quiet_hours = false" in text
    handle = tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="tl-policy-", delete=False)
    with handle:
        handle.write(text)
    return handle.name


# New Zealand prices (no other test sends there) turned upside down: SMS far cheaper than
# WhatsApp, whereas the defaults make WhatsApp the cheaper one; see tests/conversations/test_pricing.py.
CONFIGURED_PRICES = PricesConfig(sms={"NZ": 0.001}, whatsapp={"nz": 0.9})


def make_config(
    redis_url: str, gateway_port: int, simulator_port: int, prefix: str, smtp_port: int = 0
) -> Config:
    return Config(
        redis_url=redis_url,
        public_url=f"http://127.0.0.1:{gateway_port}",
        api_keys=[API_KEY],
        admin_api_keys=[ADMIN_API_KEY],
        shards=4,
        key_prefix=prefix,
        simulator=True,
        simulated_channels=sorted(Channel),
        # Every test calls from 127.0.0.1: the per-address limit has its own test
        # (tests/gateway/test_public_rate_limit.py) and must not throttle the suite.
        public_rate_limit_per_second=10_000.0,
        public_rate_limit_burst=100_000,
        simulator_port=simulator_port,
        ray_namespace=prefix,
        batch_max_delay_ms=2.0,
        secret_key="test-secret-" + prefix,
        routing_policy=wall_clock_free_policy(),
        twilio=TwilioConfig(
            account_sid=SIMULATOR_ACCOUNT_SID,
            auth_token=SIMULATOR_AUTH_TOKEN,
            base_url=f"http://127.0.0.1:{simulator_port}",
        ),
        rbm=RbmConfig(
            client_token=SIMULATOR_RBM_CLIENT_TOKEN,
            agent_id=SIMULATOR_RBM_AGENT_ID,
            access_token=SIMULATOR_RBM_ACCESS_TOKEN,
            base_url=f"http://127.0.0.1:{simulator_port}",
        ),
        # Characters that must be escaped in TwiML: the voice tests prove they are.
        voice=VoiceConfig(business_name="Smith & Sons <Threadline>"),
        whatsapp=WhatsAppConfig(
            app_secret=SIMULATOR_WHATSAPP_APP_SECRET,
            verify_token=SIMULATOR_WHATSAPP_VERIFY_TOKEN,
            access_token=SIMULATOR_WHATSAPP_ACCESS_TOKEN,
            phone_number_id=SIMULATOR_WHATSAPP_PHONE_NUMBER_ID,
            base_url=f"http://127.0.0.1:{simulator_port}",
            templates={"transactional": WhatsAppTemplate("order_update", "en_US")},
        ),
        simulator_smtp_port=smtp_port,
        email=EmailConfig(
            smtp_url=f"smtp://127.0.0.1:{smtp_port}" if smtp_port else "",
            from_address="Threadline Tests <notify@tests.threadline.local>",
            inbound_secret=EMAIL_INBOUND_SECRET,
            timeout_seconds=10.0,
        ),
        tracking=TrackingConfig(secret="test-tracking-" + uuid.uuid4().hex[:8]),
        prices=CONFIGURED_PRICES,
    )


@dataclass
class Stack:
    """Handles to the running stack, and helpers that speak to it as its users do."""

    config: Config
    http: aiohttp.ClientSession
    gateway_url: str
    simulator_url: str
    actors: list[Any]
    runners: list[web.AppRunner]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    async def post_twilio(
        self, path: str, form: dict[str, str], signature: str | None = "auto"
    ) -> aiohttp.ClientResponse:
        """POST a form to a Twilio webhook, signed as Twilio would unless told otherwise."""
        headers = {}
        if signature == "auto":
            url = self.config.public_url + path
            signature = compute_signature(self.config.twilio.auth_token, url, form.items())
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        response = await self.http.post(self.gateway_url + path, data=form, headers=headers)
        await response.read()
        return response

    async def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        async with self.http.request(method, self.gateway_url + path, headers=headers, **kwargs) as response:
            body = await response.json(content_type=None)
            return response.status, body

    async def customer_id(self, phone: str) -> str | None:
        status, body = await self.api("GET", "/v1/customers", params={"phone": phone})
        assert status == 200, body
        return body["data"][0]["id"] if body["data"] else None

    async def thread(self, customer_id: str, **params: str) -> dict:
        status, body = await self.api("GET", f"/v1/customers/{customer_id}/thread", params=params)
        assert status == 200, body
        return body

    async def simulator(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http.request(method, self.simulator_url + path, **kwargs) as response:
            return await response.json()

    async def sent_to(self, phone: str) -> list[dict]:
        return (await self.simulator("GET", "/simulator/messages", params={"to": phone}))["messages"]


def unique_phone() -> str:
    """A valid, unused US number for one test (555-01xx range numbers are fictional)."""
    digits = uuid.uuid4().int % 10_000_000
    return f"+1415{digits:07d}"


def twilio_inbound_form(phone: str, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
    """An inbound SMS webhook form as Twilio sends it."""
    sid = sid or "SM" + uuid.uuid4().hex
    form = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "US",
        "To": "+15005550006",
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": SIMULATOR_ACCOUNT_SID,
        "From": phone,
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form
