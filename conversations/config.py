"""Threadline configuration: one msgspec struct, from an optional TOML file plus THREADLINE_* env."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from conversations.keywords import KeywordReplies

ENV_PREFIX = "THREADLINE_"
SIMULATOR_ACCOUNT_SID = "AC" + "0" * 32
SIMULATOR_AUTH_TOKEN = "simulator-auth-token"


class ConfigError(ValueError):
    """A configuration problem, in one line that names the field."""


class TwilioConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Twilio Messaging/Voice credentials; empty means the built-in simulator."""

    account_sid: str = ""
    auth_token: str = ""
    base_url: str = ""  # empty: api.twilio.com, or the simulator when it runs
    from_number: str = "+15005550006"
    messaging_service_sid: str = ""


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything a gateway or shard actor needs to know at start."""

    redis_url: str = ""  # empty: embedded (127.0.0.1:6379 if it answers, else a child redis-server)
    ray_address: str = ""  # empty: a local Ray started in-process
    public_url: str = ""  # the URL providers call us on; empty: http://127.0.0.1:{port}
    api_keys: list[str] = msgspec.field(default_factory=list)
    shards: int = 16
    key_prefix: str = "tl"
    dedupe_ttl_seconds: int = 7 * 24 * 3600
    batch_max_entries: int = 256
    batch_max_delay_ms: float = 2.0
    send_concurrency: int = 64
    timer_poll_interval_ms: float = 100.0
    message_types: list[str] = msgspec.field(
        default_factory=lambda: ["transactional", "service", "marketing", "rich_media", "urgent"]
    )
    preference_link_ttl_seconds: int = 7 * 24 * 3600
    session_idle_seconds: int = 24 * 3600
    secret_key: str = ""  # signs preference-page and tracking tokens; empty: generated in data_dir
    simulator: bool | None = None  # None: on unless real provider credentials are set
    simulator_port: int = 8081
    data_dir: str = ".threadline"
    journeys_dir: str = "journeys"  # journey files (*.yaml, *.json) published at start
    ray_namespace: str = "threadline"
    twilio: TwilioConfig = msgspec.field(default_factory=TwilioConfig)
    keyword_replies: KeywordReplies = msgspec.field(default_factory=KeywordReplies)

    def __post_init__(self) -> None:
        if self.shards < 1 or self.shards > 4096:
            raise ValueError("shards must be between 1 and 4096 - at `$.shards`")
        if self.batch_max_entries < 1:
            raise ValueError("batch_max_entries must be positive - at `$.batch_max_entries`")
        if self.public_url.endswith("/"):
            self.public_url = self.public_url.rstrip("/")

    @property
    def uses_simulator(self) -> bool:
        """Whether provider traffic goes to the built-in simulator."""
        if self.simulator is not None:
            return self.simulator
        return not (self.twilio.account_sid and self.twilio.auth_token)


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
            found[field.name] = (
                [part.strip() for part in raw.split(",") if part.strip()]
                if ("list" in str(field_type))
                else raw
            )
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
    data = _merge(data, _env_overrides(Config, env, ENV_PREFIX))
    try:
        return msgspec.convert(data, Config, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"invalid config: {exc}") from exc
