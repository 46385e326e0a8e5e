"""The provider simulator: random secrets, on only when meant, never a silent stand-in, never public."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import msgspec

from channels.registry import enabled_channels
from channels.simulator import fixed_credentials
from channels.twilio_signature import compute_signature, is_valid_signature
from conversations.config import Config, load_config
from conversations.models import Channel
from gateway.banner import banner
from gateway.embedded import resolve_embedded, simulator_secrets, startup_refusal
from tests.support.stack import Stack

TWILIO = {"THREADLINE_TWILIO_ACCOUNT_SID": "AC1", "THREADLINE_TWILIO_AUTH_TOKEN": "real-token"}
PUBLISHED = {value for name, value in vars(fixed_credentials).items() if name.startswith("SIMULATOR_")}


def _resolve(tmp_path: Path, **env: str) -> Config:
    base = {"THREADLINE_REDIS_URL": "redis://127.0.0.1:1/0", "THREADLINE_DATA_DIR": str(tmp_path)}
    config, child = resolve_embedded(load_config(env={**base, **env}), 8080)
    assert child is None
    return config


def test_simulator_secrets_are_random_per_data_directory(tmp_path: Path) -> None:
    first, second = simulator_secrets(tmp_path / "a"), simulator_secrets(tmp_path / "b")
    assert simulator_secrets(tmp_path / "a") == first  # kept: they survive a restart
    assert not set(msgspec.structs.asdict(first).values()) & set(msgspec.structs.asdict(second).values())
    mode = stat.S_IMODE(os.stat(tmp_path / "a" / "simulator-secrets.json").st_mode)
    assert mode == 0o600


def test_serve_never_signs_with_a_published_value(tmp_path: Path) -> None:
    config = _resolve(tmp_path)
    used = {
        config.twilio.auth_token,
        config.whatsapp.app_secret,
        config.whatsapp.verify_token,
        config.whatsapp.access_token,
        config.rbm.client_token,
        config.rbm.access_token,
        config.email.inbound_secret,
    }
    assert all(used) and not used & PUBLISHED


def test_any_real_provider_turns_the_simulator_off() -> None:
    assert load_config(env={}).uses_simulator
    for env in (
        TWILIO,
        {"THREADLINE_WHATSAPP_ACCESS_TOKEN": "EAAG", "THREADLINE_WHATSAPP_PHONE_NUMBER_ID": "1"},
        {"THREADLINE_RBM_AGENT_ID": "bot", "THREADLINE_RBM_ACCESS_TOKEN": "ya29"},
        {"THREADLINE_SMTP_URL": "smtp://mail.example.com:587"},
    ):
        assert not load_config(env=env).uses_simulator, env
    assert load_config(env={"THREADLINE_WHATSAPP_APP_SECRET": "s"}).uses_simulator  # nothing can send


def test_beside_a_real_provider_the_other_channels_are_disabled(tmp_path: Path) -> None:
    """An RBM-only deployment: no simulated SMS whose known token would sign forged webhooks."""
    config = _resolve(tmp_path, THREADLINE_RBM_AGENT_ID="bot", THREADLINE_RBM_ACCESS_TOKEN="ya29")
    assert not config.uses_simulator and config.simulated_channels == []
    assert enabled_channels(config) == {Channel.RCS}
    url, form = "http://127.0.0.1:8080/webhooks/twilio/sms", {"From": "+15550100000", "Body": "STOP"}
    forged = compute_signature(fixed_credentials.SIMULATOR_AUTH_TOKEN, url, form.items())
    assert not is_valid_signature(config.twilio.auth_token, url, form.items(), forged)


def test_asked_for_it_simulates_only_the_channels_without_credentials(tmp_path: Path) -> None:
    config = _resolve(tmp_path, THREADLINE_SIMULATOR="true", **TWILIO)
    assert config.simulated_channels == [Channel.EMAIL, Channel.RCS, Channel.WHATSAPP]
    assert (config.twilio.auth_token, config.twilio.base_url) == ("real-token", "")
    assert enabled_channels(config) == set(Channel)
    text = banner(config, "127.0.0.1", 8080)
    assert "Simulated channels (nothing leaves this machine on them): email, rcs, whatsapp" in text
    assert "X-Twilio-Signature" not in text  # no signed curl for a real Twilio account


def test_a_public_bind_with_the_simulator_needs_the_flag() -> None:
    simulated = load_config(env={"THREADLINE_SECRET_KEY": "shared"})
    assert startup_refusal(simulated, "127.0.0.1", simulator_flag=False) is None
    assert startup_refusal(simulated, "localhost", simulator_flag=False) is None
    assert startup_refusal(simulated, "0.0.0.0", simulator_flag=True) is None
    for host in ("0.0.0.0", "::", "10.0.0.5", "gateway.internal"):
        assert startup_refusal(simulated, host, simulator_flag=False), host
    real = load_config(env={**TWILIO, "THREADLINE_SECRET_KEY": "shared"})
    assert startup_refusal(real, "0.0.0.0", simulator_flag=False) is None


def test_serve_refuses_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env["THREADLINE_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--simulator" in done.stderr
    assert not (tmp_path / "simulator-secrets.json").exists()  # refused before anything started


async def test_readiness_names_the_simulated_channels(stack: Stack) -> None:
    async with stack.http.get(stack.gateway_url + "/readyz") as response:
        body = await response.json()
    assert body["simulated_channels"] == sorted(Channel)
