"""The embedded default: its own redis-server when none answers, and its own key prefix."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import redis

from conversations.config import load_config
from gateway.embedded import EmbeddedRedisError, free_port, resolve_embedded, start_redis_server


def _closed_port() -> str:
    return f"127.0.0.1:{free_port()}"


def test_with_no_redis_at_the_probe_a_child_keeps_its_aof_in_a_relative_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative data dir, as `make run` uses: Redis chdirs into --dir
    env = {"THREADLINE_REDIS_PROBE": _closed_port(), "THREADLINE_DATA_DIR": "data"}
    config, child = resolve_embedded(load_config(env=env), 8080)
    assert child is not None
    try:
        with redis.Redis.from_url(config.redis_url) as client:
            client.set(config.key_prefix + ":probe", "1")
            client.execute_command("BGREWRITEAOF")
            assert client.info("server")["process_id"] == child.pid
            assert Path(client.config_get("dir")["dir"]) == (tmp_path / "data" / "redis").resolve()
        assert (tmp_path / "data" / "redis" / "redis.log").stat().st_size > 0
        aof = tmp_path / "data" / "redis" / "appendonlydir"
        assert any(aof.iterdir()), "no AOF files in the data dir"
        assert (tmp_path / "data" / "redis" / "url").read_text().strip() == config.redis_url
    finally:
        child.terminate()
        child.wait(10)


def test_a_failing_redis_server_is_quoted_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "redis.log").mkdir()  # Redis cannot open its log file
    with pytest.raises(EmbeddedRedisError) as failure:
        start_redis_server(tmp_path, free_port())
    message = str(failure.value)
    assert "Can't open the log file" in message and str(tmp_path / "redis.log") in message


def test_a_port_held_by_something_else_is_not_mistaken_for_our_redis(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(EmbeddedRedisError, match=r"(?i)address already in use"):
            start_redis_server(tmp_path, holder.getsockname()[1])


def test_the_embedded_default_has_a_key_prefix_of_its_own_per_data_dir(
    tmp_path: Path, redis_url: str
) -> None:
    probe = redis_url.removeprefix("redis://").split("/")[0]  # the session's Redis answers there

    def prefix(data_dir: str, **env: str) -> str:
        settings = {"THREADLINE_REDIS_PROBE": probe, "THREADLINE_DATA_DIR": data_dir, **env}
        config, child = resolve_embedded(load_config(env=settings), 8080)
        assert child is None
        return config.key_prefix

    first = prefix(str(tmp_path / "a"))
    assert first.startswith("tl-") and len(first) == len("tl-") + 8
    assert prefix(str(tmp_path / "a")) == first  # kept in the data dir
    assert prefix(str(tmp_path / "b")) not in ("tl", first)
    assert prefix(str(tmp_path / "a"), THREADLINE_KEY_PREFIX="mine") == "mine"
    assert prefix(str(tmp_path / "a"), THREADLINE_REDIS_URL=redis_url) == "tl"  # not embedded: as before
    assert not os.path.exists(tmp_path / "a" / "redis")  # a Redis answered: no child, no files for one
