"""One configured secret_key signs everything replicas must agree on; serve insists on it when shared."""

from __future__ import annotations

from pathlib import Path

from channels.tracking import LinkTracker
from conversations.config import Config, TrackingConfig, load_config
from gateway.embedded import resolve_embedded, startup_refusal

REAL = {"THREADLINE_TWILIO_ACCOUNT_SID": "AC1", "THREADLINE_TWILIO_AUTH_TOKEN": "t"}


def _replica(data_dir: Path, **env: str) -> Config:
    base = {"THREADLINE_REDIS_URL": "redis://127.0.0.1:1/0", "THREADLINE_DATA_DIR": str(data_dir)}
    config, _ = resolve_embedded(load_config(env={**base, **env}), 8080)
    return config


def test_replicas_with_one_secret_key_verify_each_others_tracking_links(tmp_path: Path) -> None:
    one = _replica(tmp_path / "one", THREADLINE_SECRET_KEY="shared-key")
    other = _replica(tmp_path / "other", THREADLINE_SECRET_KEY="shared-key")
    assert one.tracking_key and one.tracking_key == other.tracking_key
    assert one.tracking_key != one.secret_key  # derived: a tracking token never reveals the key itself
    token_url = LinkTracker(one.tracking_key, one.public_url).rewrite_text("https://example.com/a", "m", "c")
    token = token_url.rsplit("/t/", 1)[1]
    assert LinkTracker(other.tracking_key, other.public_url).verify(token).url == "https://example.com/a"


def test_the_tracking_key_follows_the_secret_key() -> None:
    assert Config(secret_key="a").tracking_key != Config(secret_key="b").tracking_key
    assert Config(secret_key="a", tracking=TrackingConfig(secret="explicit")).tracking_key == "explicit"
    assert Config().tracking_key == ""


def test_serve_needs_a_configured_secret_key_when_replicas_share_work() -> None:
    unset = load_config(env=REAL)
    assert startup_refusal(unset, "127.0.0.1", simulator_flag=False) is None  # one local process
    clustered = load_config(env={**REAL, "THREADLINE_RAY_ADDRESS": "ray://head:10001"})
    refusal = startup_refusal(clustered, "127.0.0.1", simulator_flag=False)
    assert refusal and "secret_key" in refusal and "ray_address" in refusal
    refusal = startup_refusal(unset, "0.0.0.0", simulator_flag=False)
    assert refusal and "secret_key" in refusal and "\n" not in refusal
    assert startup_refusal(load_config(env={**REAL, "THREADLINE_SECRET_KEY": "s"}), "0.0.0.0", False) is None
    simulated_in_public = load_config(env={"THREADLINE_SIMULATOR": "true"})
    assert "secret_key" in (startup_refusal(simulated_in_public, "0.0.0.0", simulator_flag=True) or "")
