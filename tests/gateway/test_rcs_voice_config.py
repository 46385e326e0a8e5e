"""RBM and voice configuration: environment overrides and the simulator defaults."""

from __future__ import annotations

from channels.simulator.fixed_credentials import SIMULATOR_RBM_AGENT_ID
from conversations.config import load_config
from gateway.embedded import resolve_embedded, simulator_secrets


def test_rbm_and_voice_settings_come_from_the_environment() -> None:
    config = load_config(
        env={
            "THREADLINE_RBM_CLIENT_TOKEN": "SJENCPGJESMGUFPY",
            "THREADLINE_RBM_AGENT_ID": "welcome-bot",
            "THREADLINE_RBM_CAPABILITY_TTL_SECONDS": "60",
            "THREADLINE_VOICE_BUSINESS_NAME": "Acme & Co",
        }
    )
    assert (config.rbm.client_token, config.rbm.agent_id) == ("SJENCPGJESMGUFPY", "welcome-bot")
    assert config.rbm.capability_ttl_seconds == 60
    assert config.voice.business_name == "Acme & Co"


def test_without_credentials_rbm_talks_to_the_simulator(tmp_path) -> None:
    env = {"THREADLINE_REDIS_URL": "redis://127.0.0.1:1/0", "THREADLINE_DATA_DIR": str(tmp_path)}
    config, _ = resolve_embedded(load_config(env=env), port=8080)
    assert config.rbm.agent_id == SIMULATOR_RBM_AGENT_ID
    assert config.rbm.client_token == simulator_secrets(tmp_path).rbm_client_token
    assert config.rbm.base_url == f"http://127.0.0.1:{config.simulator_port}"
    real = load_config(
        env={**env, "THREADLINE_RBM_AGENT_ID": "welcome-bot", "THREADLINE_RBM_ACCESS_TOKEN": "ya29.token"}
    )
    config, _ = resolve_embedded(real, port=8080)
    assert (config.rbm.agent_id, config.rbm.base_url) == ("welcome-bot", "")
