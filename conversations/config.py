"""Threadline configuration: one msgspec struct, from an optional TOML file plus THREADLINE_* env."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from conversations.access import ApiKeySpec, parse_api_key

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
    # "key" (every scope), "key:send+read", or a table {key|sha256, scopes, name, rate_per_second, burst}
    api_keys: list[str | ApiKeySpec] = msgspec.field(default_factory=list)
    rate_limit_per_second: float = 1000.0  # per API key; 0 turns rate limiting off
    rate_limit_burst: int = 2000
    shards: int = 16
    key_prefix: str = "tl"
    dedupe_ttl_seconds: int = 7 * 24 * 3600
    idempotency_ttl_seconds: int = 24 * 3600  # how long an Idempotency-Key's response is kept
    idempotency_lease_seconds: float = 30.0  # after this a crashed request's key can be retried
    idempotency_wait_seconds: float = 2.0  # a concurrent duplicate waits this long, then 409
    batch_max_entries: int = 256
    batch_max_delay_ms: float = 2.0
    send_concurrency: int = 64
    simulator: bool | None = None  # None: on unless real provider credentials are set
    simulator_port: int = 8081
    data_dir: str = ".threadline"
    ray_namespace: str = "threadline"
    twilio: TwilioConfig = msgspec.field(default_factory=TwilioConfig)

    def __post_init__(self) -> None:
        if self.shards < 1 or self.shards > 4096:
            raise ValueError("shards must be between 1 and 4096 - at `$.shards`")
        if self.batch_max_entries < 1:
            raise ValueError("batch_max_entries must be positive - at `$.batch_max_entries`")
        for index, entry in enumerate(self.api_keys):
            try:
                parse_api_key(entry)
            except ValueError as exc:
                raise ValueError(f"{exc} - at `$.api_keys[{index}]`") from None
        if self.rate_limit_per_second < 0 or self.rate_limit_burst < 1:
            raise ValueError("rate_limit_per_second must be >= 0 and rate_limit_burst >= 1")
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
