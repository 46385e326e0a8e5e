"""WhatsApp configuration: THREADLINE_WHATSAPP_* env, simulator defaults, which senders exist."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from channels.registry import build_senders
from conversations.config import ConfigError, WhatsAppTemplate, load_config
from conversations.models import Channel
from gateway.embedded import resolve_embedded, simulator_secrets


def test_env_sets_every_whatsapp_field() -> None:
    config = load_config(
        env={
            "THREADLINE_WHATSAPP_APP_SECRET": "secret",
            "THREADLINE_WHATSAPP_VERIFY_TOKEN": "verify",
            "THREADLINE_WHATSAPP_ACCESS_TOKEN": "EAAG-token",
            "THREADLINE_WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
            "THREADLINE_WHATSAPP_API_VERSION": "v22.0",
            "THREADLINE_WHATSAPP_BASE_URL": "https://graph.example.test",
            "THREADLINE_WHATSAPP_TEMPLATES": '{"transactional": {"name": "order_update", "language": "de"}}',
        }
    )
    wa = config.whatsapp
    assert (wa.app_secret, wa.verify_token, wa.access_token) == ("secret", "verify", "EAAG-token")
    assert (wa.phone_number_id, wa.api_version, wa.base_url) == (
        "106540352242922",
        "v22.0",
        "https://graph.example.test",
    )
    assert wa.templates == {"transactional": WhatsAppTemplate("order_update", "de")}
    assert load_config(env={}).whatsapp.api_version == "v21.0"


def test_templates_must_be_a_json_object() -> None:
    with pytest.raises(ConfigError, match="THREADLINE_WHATSAPP_TEMPLATES"):
        load_config(env={"THREADLINE_WHATSAPP_TEMPLATES": "order_update"})
    with pytest.raises(ConfigError):
        load_config(env={"THREADLINE_WHATSAPP_TEMPLATES": '{"service": {"language": "en"}}'})


def test_any_real_credentials_turn_the_simulator_off() -> None:
    assert load_config(env={}).uses_simulator
    twilio = {"THREADLINE_TWILIO_ACCOUNT_SID": "AC1", "THREADLINE_TWILIO_AUTH_TOKEN": "t"}
    whatsapp = {"THREADLINE_WHATSAPP_ACCESS_TOKEN": "EAAG", "THREADLINE_WHATSAPP_PHONE_NUMBER_ID": "1"}
    assert not load_config(env=twilio).uses_simulator
    assert not load_config(env=whatsapp).uses_simulator
    assert load_config(env={"THREADLINE_WHATSAPP_APP_SECRET": "s"}).uses_simulator  # no sending credentials
    assert load_config(env={**whatsapp, "THREADLINE_SIMULATOR": "true"}).uses_simulator


def _ready(env: dict[str, str], data_dir: Path):
    base = {
        "THREADLINE_REDIS_URL": "redis://127.0.0.1:1/0",
        "THREADLINE_API_KEYS": "k",
        "THREADLINE_PUBLIC_URL": "http://gw",
        "THREADLINE_SIMULATOR_PORT": "8181",
        "THREADLINE_DATA_DIR": str(data_dir),
    }
    config, child = resolve_embedded(load_config(env={**base, **env}), 8080)
    assert child is None
    return config


def test_embedded_fills_simulator_defaults_only_when_simulating(tmp_path: Path) -> None:
    simulated = _ready({}, tmp_path).whatsapp
    assert simulated.access_token == simulator_secrets(tmp_path).whatsapp_access_token
    assert simulated.app_secret and simulated.verify_token and simulated.phone_number_id
    assert simulated.base_url == "http://127.0.0.1:8181"
    real = _ready(
        {"THREADLINE_WHATSAPP_ACCESS_TOKEN": "EAAG", "THREADLINE_WHATSAPP_PHONE_NUMBER_ID": "42"}, tmp_path
    ).whatsapp
    assert (real.access_token, real.phone_number_id, real.base_url, real.app_secret) == ("EAAG", "42", "", "")


async def test_a_whatsapp_sender_exists_only_with_credentials(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        assert Channel.WHATSAPP in build_senders(session, _ready({}, tmp_path))
        twilio = {"THREADLINE_TWILIO_ACCOUNT_SID": "AC1", "THREADLINE_TWILIO_AUTH_TOKEN": "t"}
        twilio_only = _ready(twilio, tmp_path)
        # Twilio credentials give SMS and voice; no WhatsApp (nor RCS) without their own.
        assert set(build_senders(session, twilio_only)) == {Channel.SMS, Channel.VOICE}


async def test_enabled_channels_match_the_senders_built(tmp_path: Path) -> None:
    from channels.registry import enabled_channels

    async with aiohttp.ClientSession() as session:
        for env in ({}, {"THREADLINE_TWILIO_ACCOUNT_SID": "AC1", "THREADLINE_TWILIO_AUTH_TOKEN": "t"}):
            config = _ready(env, tmp_path)
            assert enabled_channels(config) == frozenset(build_senders(session, config))
