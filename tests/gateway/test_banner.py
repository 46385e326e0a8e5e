"""The ``serve`` banner shows a key only when ``serve`` made it: configured keys stay out of logs."""

from __future__ import annotations

from pathlib import Path

from conversations.config import load_config
from gateway.cli import banner
from gateway.embedded import resolve_embedded

PRODUCTION_KEY = "tl_live_4f9a2c1e8b7d6a5f"


def test_a_configured_key_is_masked() -> None:
    config = load_config(env={"THREADLINE_API_KEYS": f"{PRODUCTION_KEY}:send+read,other-key-0123456789"})
    text = banner(config, "127.0.0.1", 8080)
    assert PRODUCTION_KEY not in text and "other-key" not in text
    assert "Bearer tl_l…" in text


def test_a_short_configured_key_shows_nothing_of_itself() -> None:
    text = banner(load_config(env={"THREADLINE_API_KEYS": "k3y"}), "127.0.0.1", 8080)
    assert "k3y" not in text and "Bearer …" in text


def test_a_key_serve_generated_is_shown_whole(tmp_path: Path) -> None:
    env = {"THREADLINE_REDIS_URL": "redis://127.0.0.1:1/0", "THREADLINE_DATA_DIR": str(tmp_path)}
    config, _ = resolve_embedded(load_config(env=env), 8080)
    key = (tmp_path / "dev-api-key").read_text().strip()
    assert f"Bearer {key}" in banner(config, "127.0.0.1", 8080, generated_key=True)
