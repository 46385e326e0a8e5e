"""Threadline configuration: one msgspec struct, from an optional TOML file plus THREADLINE_* env."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from conversations.access import ApiKeySpec, Scope, parse_api_key
from conversations.keywords import KeywordReplies
from conversations.models import Channel
from conversations.slots import DEFAULT_SLOTS, MAX_SLOTS, SlotMap, default_slot_map

ENV_PREFIX = "THREADLINE_"


def default_shards() -> int:
    """One shard per core: more actor processes than cores crowd out the gateway."""
    return os.cpu_count() or 1


class ConfigError(ValueError):
    """A configuration problem, in one line that names the field."""


class TwilioConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Twilio Messaging/Voice credentials; empty means the built-in simulator."""

    account_sid: str = ""
    auth_token: str = ""
    base_url: str = ""  # empty: api.twilio.com, or the simulator when it runs
    from_number: str = "+15005550006"
    messaging_service_sid: str = ""


class RbmConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Google RCS Business Messaging; empty means the built-in simulator (or RCS off)."""

    client_token: str = ""  # verifies webhooks (X-Goog-Signature) and the clientToken echo
    agent_id: str = ""
    base_url: str = ""  # empty: rcsbusinessmessaging.googleapis.com, or the simulator when it runs
    access_token: str = ""  # OAuth bearer token of the agent's service account
    capability_ttl_seconds: int = 6 * 3600
    sms_fallback_max_segments: int = 2  # an adapted rich card never costs more SMS segments


class VoiceConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Twilio Voice (uses the Twilio credentials): what an incoming call hears."""

    business_name: str = "Threadline"
    language: str = "en-US"
    max_turns: int = 5  # Gathers per call before we close it politely


class WhatsAppTemplate(msgspec.Struct, forbid_unknown_fields=True):
    """An approved WhatsApp template used for a message type outside the 24-hour window."""

    name: str
    language: str = "en_US"
    body_variable: bool = True  # pass the message body as the template's one body variable {{1}}


class WhatsAppConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Meta WhatsApp Cloud API settings; empty credentials mean the built-in simulator."""

    app_secret: str = ""  # signs webhooks (X-Hub-Signature-256)
    verify_token: str = ""  # echoed back by the subscription check (GET hub.verify_token)
    access_token: str = ""
    phone_number_id: str = ""
    api_version: str = "v21.0"
    base_url: str = ""  # empty: graph.facebook.com, or the simulator when it runs
    templates: dict[str, WhatsAppTemplate] = msgspec.field(default_factory=dict)  # message type → template

    @property
    def has_credentials(self) -> bool:
        """Whether real sending credentials are set."""
        return bool(self.access_token and self.phone_number_id)


class EmailConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Email: SMTP for sending, a shared secret for the inbound parse webhook.

    ``smtp_url`` is ``smtp://user:pass@host:port`` (STARTTLS when the server offers it) or
    ``smtps://…`` (TLS from the start); empty means no email, or the simulator's SMTP sink.
    """

    smtp_url: str = ""
    from_address: str = "Threadline <notifications@threadline.local>"
    inbound_secret: str = ""  # empty: the inbound webhook refuses everything
    timeout_seconds: float = 30.0


class TrackingConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Open and click tracking: which channels get tracked links by default, and the signing key."""

    secret: str = ""  # HMAC key for tracking tokens; empty: derived from the config's secret_key
    channels: list[str] = msgspec.field(default_factory=lambda: ["email"])


class AgentConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A console agent set in the config file: only the SHA-256 (hex) of its token is kept."""

    name: str
    token_sha256: str


class PricesConfig(msgspec.Struct, forbid_unknown_fields=True):
    """``[prices]``: overrides of conversations.pricing.DEFAULT_PRICES, country -> price per channel.

    Countries are ISO 3166 alpha-2 codes, ``"*"`` any other; SMS is per segment, voice per minute.
    """

    sms: dict[str, float] = msgspec.field(default_factory=dict)
    whatsapp: dict[str, float] = msgspec.field(default_factory=dict)
    rcs: dict[str, float] = msgspec.field(default_factory=dict)
    voice: dict[str, float] = msgspec.field(default_factory=dict)
    email: dict[str, float] = msgspec.field(default_factory=dict)
    # Per message type, e.g. [prices.by_type.marketing] whatsapp = {US = 0.025}; a country it
    # does not name costs what the channel's own rate says.
    by_type: dict[str, dict[Channel, dict[str, float]]] = msgspec.field(default_factory=dict)
    currency: str = ""  # empty: the default table's (USD); campaign budgets are in it
    voice_minutes: float = 0.0  # what a call is expected to last; 0: the default (1 minute)

    def __post_init__(self) -> None:
        tables = [(channel.value, getattr(self, channel.value)) for channel in Channel]
        tables += [
            (f"by_type.{message_type}.{channel}", prices)
            for message_type, by_channel in self.by_type.items()
            for channel, prices in by_channel.items()
        ]
        # msgspec appends " - at `$.prices`" to these messages.
        for name, prices in tables:
            for country, price in prices.items():
                if country != "*" and not (len(country) == 2 and country.isalpha()):
                    raise ValueError(f'`{name}.{country}`: not an ISO 3166 alpha-2 country code or "*"')
                if not 0 <= price < float("inf"):
                    raise ValueError(f"`{name}.{country}`: a price must be a finite number >= 0")
        if self.voice_minutes < 0:
            raise ValueError("`voice_minutes` must be >= 0")


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything a gateway or shard actor needs to know at start."""

    redis_url: str = ""  # empty: embedded (redis_probe if it answers, else a child redis-server)
    redis_probe: str = "127.0.0.1:6379"  # host:port where the embedded default looks for a running Redis
    ray_address: str = ""  # empty: a local Ray started in-process
    public_url: str = ""  # the URL providers call us on; empty: http://127.0.0.1:{port}
    # "key" (every scope), "key:send+read", or a table {key|sha256, scopes, name, rate_per_second, burst}
    api_keys: list[str | ApiKeySpec] = msgspec.field(default_factory=list)
    rate_limit_per_second: float = 1000.0  # per API key; 0 turns rate limiting off
    rate_limit_burst: int = 2000
    # Routes anyone may call (tracked links, the preference page, probes, docs), per client address.
    public_rate_limit_per_second: float = 20.0  # 0 turns it off
    public_rate_limit_burst: int = 100
    # Proxies whose X-Forwarded-For names the client (CIDRs, e.g. "10.0.0.0/8"); none: the peer.
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    # Shard actors (one Ray actor each): by default one per core of the machine that loads the
    # config. Every gateway and actor of a deployment must agree: set it on a cluster.
    shards: int = msgspec.field(default_factory=default_shards)
    # Customer ids name one of this many slots: fixed for the deployment's life (checked at start).
    slots: int = DEFAULT_SLOTS
    # Every Redis key starts with it. Empty: "tl", except in the embedded default (no redis_url),
    # which keeps a prefix of its own per data dir, so two checkouts never share customers.
    key_prefix: str = ""
    dedupe_ttl_seconds: int = 7 * 24 * 3600
    idempotency_ttl_seconds: int = 24 * 3600  # how long an Idempotency-Key's response is kept
    idempotency_lease_seconds: float = 30.0  # after this a crashed request's key can be retried
    idempotency_wait_seconds: float = 2.0  # a concurrent duplicate waits this long, then 409
    batch_max_entries: int = 256
    batch_max_delay_ms: float = 2.0
    send_concurrency: int = 64
    timer_poll_interval_ms: float = 100.0
    message_types: list[str] = msgspec.field(
        default_factory=lambda: ["transactional", "service", "marketing", "rich_media", "urgent"]
    )
    preference_link_ttl_seconds: int = 7 * 24 * 3600
    session_idle_seconds: int = 24 * 3600
    # Signs preference-page tokens and derives the tracking key: every replica must share it.
    # Empty: generated in data_dir, which `serve` allows only on loopback without ray_address.
    secret_key: str = ""
    simulator: bool | None = None  # None: on only when no real provider is configured at all
    # Set by `serve`, not by hand: the channels the built-in simulator stands in for.
    simulated_channels: list[Channel] = msgspec.field(default_factory=list)
    simulator_port: int = 8081
    data_dir: str = ".threadline"
    journeys_dir: str = "journeys"  # journey files (*.yaml, *.json) published at start
    segments_dir: str = "segments"  # segment files (*.yaml, *.json) published at start
    ray_namespace: str = "threadline"
    routing_policy: str = ""  # a routing policy TOML file; empty: conversations/routing/default_policy.toml
    twilio: TwilioConfig = msgspec.field(default_factory=TwilioConfig)
    whatsapp: WhatsAppConfig = msgspec.field(default_factory=WhatsAppConfig)
    keyword_replies: KeywordReplies = msgspec.field(default_factory=KeywordReplies)
    rbm: RbmConfig = msgspec.field(default_factory=RbmConfig)
    voice: VoiceConfig = msgspec.field(default_factory=VoiceConfig)
    simulator_smtp_port: int = 8025  # the simulator's SMTP sink, used when email.smtp_url is empty
    email: EmailConfig = msgspec.field(default_factory=EmailConfig)
    tracking: TrackingConfig = msgspec.field(default_factory=TrackingConfig)
    prices: PricesConfig = msgspec.field(default_factory=PricesConfig)
    # An alias: each is an ``api_keys`` entry with the ``admin`` scope (which manages agents too).
    admin_api_keys: list[str] = msgspec.field(default_factory=list)
    agents: list[AgentConfig] = msgspec.field(default_factory=list)  # console agents from the file
    console_events_maxlen: int = 100_000  # updates kept for agents that reconnect
    console_socket_queue: int = 256  # frames a slow console socket may have pending before it is closed
    console_login_ttl_seconds: int = 24 * 3600  # how long a one-time console sign-in link stays valid

    def __post_init__(self) -> None:
        if self.slots < 1 or self.slots > MAX_SLOTS:
            raise ValueError(f"slots must be between 1 and {MAX_SLOTS} - at `$.slots`")
        if self.shards < 1 or self.shards > min(4096, self.slots):
            raise ValueError(f"shards must be between 1 and {min(4096, self.slots)} (slots) - at `$.shards`")
        if self.batch_max_entries < 1:
            raise ValueError("batch_max_entries must be positive - at `$.batch_max_entries`")
        for index, entry in enumerate(self.api_keys):
            try:
                parse_api_key(entry)
            except ValueError as exc:
                raise ValueError(f"{exc} - at `$.api_keys[{index}]`") from None
        host, _, port = self.redis_probe.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("redis_probe must be host:port - at `$.redis_probe`")
        if not all(self.admin_api_keys):
            raise ValueError("an admin API key must not be empty - at `$.admin_api_keys`")
        if self.rate_limit_per_second < 0 or self.rate_limit_burst < 1:
            raise ValueError("rate_limit_per_second must be >= 0 and rate_limit_burst >= 1")
        if self.public_rate_limit_per_second < 0 or self.public_rate_limit_burst < 1:
            raise ValueError("public_rate_limit_per_second must be >= 0 and public_rate_limit_burst >= 1")
        for index, network in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"not an IP network: {network!r} - at `$.trusted_proxies[{index}]`"
                ) from None
        if self.public_url.endswith("/"):
            self.public_url = self.public_url.rstrip("/")

    def slot_map(self) -> SlotMap:
        """The default map of this config's slots onto its shards (build it once and keep it)."""
        return default_slot_map(self.slots, self.shards)

    @property
    def tracking_key(self) -> str:
        """The key of tracking tokens: ``tracking.secret``, else derived from ``secret_key``.

        Derived, not generated, so every replica and every restart signs and verifies alike.
        """
        if self.tracking.secret or not self.secret_key:
            return self.tracking.secret
        return hmac.new(self.secret_key.encode(), b"threadline tracking tokens", hashlib.sha256).hexdigest()

    @property
    def real_channels(self) -> frozenset[Channel]:
        """The channels with a real provider's credentials set."""
        channels: set[Channel] = set()
        if self.twilio.account_sid and self.twilio.auth_token:
            channels |= {Channel.SMS, Channel.VOICE}
        if self.whatsapp.has_credentials:
            channels.add(Channel.WHATSAPP)
        if self.rbm.agent_id and self.rbm.access_token:
            channels.add(Channel.RCS)
        if self.email.smtp_url:
            channels.add(Channel.EMAIL)
        return frozenset(channels)

    @property
    def all_api_keys(self) -> list[str | ApiKeySpec]:
        """``api_keys`` plus the ``admin_api_keys`` alias, each of those with the ``admin`` scope."""
        aliases = [ApiKeySpec(key=key, scopes=[Scope.ADMIN], name="admin") for key in self.admin_api_keys]
        return [*self.api_keys, *aliases]

    @property
    def uses_simulator(self) -> bool:
        """Whether the built-in simulator runs: when asked for, or when no provider is configured."""
        if self.simulator is not None:
            return self.simulator
        # Any real provider switches it off: a simulator must never stand in, silently, for a
        # channel of a deployment that talks to real ones (that channel is simply disabled).
        return not self.real_channels


# Names the issue gave that the automatic THREADLINE_<SECTION>_<FIELD> scheme would spell
# differently; the automatic names work too (they win when both are set).
ENV_ALIASES = {
    "THREADLINE_SMTP_URL": ("email", "smtp_url"),
}


def _env_aliases(env: Mapping[str, str]) -> dict:
    found: dict[str, dict[str, str]] = {}
    for name, (section, field) in ENV_ALIASES.items():
        if name in env:
            found.setdefault(section, {})[field] = env[name]
    return found


def _env_overrides(struct_type: type[msgspec.Struct], env: Mapping[str, str], prefix: str) -> dict:
    """Collect THREADLINE_FIELD (and THREADLINE_SECTION_FIELD) values for a struct's fields."""
    found: dict[str, Any] = {}
    for field in msgspec.structs.fields(struct_type):
        name = prefix + field.name.upper()
        field_type = field.type
        if isinstance(field_type, type) and issubclass(field_type, msgspec.Struct):
            nested = _env_overrides(field_type, env, name + "_")
            if nested:
                found[field.name] = nested
        elif name in env:
            raw = env[name]
            if "dict" in str(field_type):  # a mapping comes as JSON, e.g. WhatsApp templates
                try:
                    found[field.name] = msgspec.json.decode(raw)
                except msgspec.DecodeError as exc:
                    raise ConfigError(f"{name} must be a JSON object: {exc}") from exc
            elif "list" in str(field_type):
                found[field.name] = [part.strip() for part in raw.split(",") if part.strip()]
            else:
                found[field.name] = raw
    return found


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the TOML file (if any), apply environment overrides, validate; raise ConfigError."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
    data = _merge(data, _env_aliases(env))
    data = _merge(data, _env_overrides(Config, env, ENV_PREFIX))
    try:
        return msgspec.convert(data, Config, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"invalid config: {exc}") from exc
