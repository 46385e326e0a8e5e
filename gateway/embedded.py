"""The embedded defaults of ``threadline serve``: find or start Redis, fill in dev settings."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import msgspec
import redis

# Identifiers, not secrets: the simulator's secrets are random per data directory.
from channels.simulator.fixed_credentials import (
    SIMULATOR_ACCOUNT_SID,
    SIMULATOR_RBM_AGENT_ID,
    SIMULATOR_WHATSAPP_PHONE_NUMBER_ID,
)
from conversations.config import Config
from conversations.models import Channel

DEFAULT_KEY_PREFIX = "tl"
EMBEDDED_REDIS_PORT = 6390  # the child redis-server's port when it is free
LOG_LINES_SHOWN = 15


class EmbeddedRedisError(RuntimeError):
    """The child ``redis-server`` could not be started; the message says why, in Redis's words."""


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or "" (every interface)


def startup_refusal(config: Config, host: str, simulator_flag: bool) -> str | None:
    """Why ``serve`` must not start with this config on ``host``, in one line; None if it may."""
    if config.uses_simulator and not is_loopback(host) and not simulator_flag:
        return (
            f"refusing to serve simulated providers on {host}: anyone who reaches it could inject "
            "messages; configure real providers, bind 127.0.0.1, or pass --simulator to mean it"
        )
    if not config.secret_key and (config.ray_address or not is_loopback(host)):
        where = "with ray_address set" if config.ray_address else f"on {host}"
        return (
            f"secret_key must be configured {where}: every replica signs and checks links with it "
            "(set THREADLINE_SECRET_KEY to one random value shared by all gateways)"
        )
    return None


def parse_host_port(value: str) -> tuple[str, int]:
    """``host:port`` (``redis_probe``) as a pair; ValueError when it is not one."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {value!r}")
    return host, int(port)


def _last_lines(path: Path, count: int = LOG_LINES_SHOWN) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return []


def _serves_on(process: subprocess.Popen, port: int) -> bool:
    """Whether *this* redis-server answers on ``port`` (not another process that holds it)."""
    if not port_open("127.0.0.1", port):
        return False
    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
            return int(client.info("server")["process_id"]) == process.pid
    except (redis.RedisError, KeyError, ValueError):
        return False


def start_redis_server(data_dir: Path, port: int, probe: str = "127.0.0.1:6379") -> subprocess.Popen:
    """A child ``redis-server`` with AOF on (appendfsync everysec) in ``data_dir``.

    Every path is absolute: Redis changes into ``--dir`` before it opens its log file, so a
    relative ``--logfile`` would be looked up inside that directory. What Redis says before its
    log is open (a bad option, say) goes to ``redis-server.out`` beside it; on failure the last
    lines of both are in the error.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedRedisError(
            f"no Redis answers on {probe} and redis-server is not installed; "
            "install it (apt-get install redis-server) or set THREADLINE_REDIS_URL"
        )
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file, out_file = data_dir / "redis.log", data_dir / "redis-server.out"
    with out_file.open("w") as out:
        process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--logfile",
                str(log_file),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 10
    while not _serves_on(process, port):
        exited = process.poll() is not None
        if exited or time.monotonic() > deadline:
            if not exited:
                process.kill()
                process.wait(5)
            said = _last_lines(out_file) + _last_lines(log_file)
            detail = "\n".join(f"  {line}" for line in said) or "  (it wrote nothing)"
            raise EmbeddedRedisError(
                f"redis-server did not start on 127.0.0.1:{port} (exit status {process.returncode}); "
                f"it said ({out_file}, {log_file}):\n{detail}"
            )
        time.sleep(0.05)
    return process


def _persisted_secret(path: Path, prefix: str) -> str:
    """A random secret kept in the data dir (mode 600), so it survives restarts."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = prefix + secrets.token_urlsafe(24)
    path.write_text(value + "\n")
    os.chmod(path, 0o600)
    return value


def dev_api_key_file(config: Config) -> Path:
    """Where the embedded default keeps its development API key."""
    return Path(config.data_dir).resolve() / "dev-api-key"


def _dev_api_key(data_dir: Path) -> str:
    """A development API key kept in the data dir, so it survives restarts."""
    return _persisted_secret(data_dir / "dev-api-key", "tl_dev_")


class SimulatorSecrets(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the simulator and the gateway share to sign and check each other's traffic.

    Random per data directory (``simulator-secrets.json``, mode 600): a value anyone can read in
    the source would let anyone sign webhooks as a provider.
    """

    twilio_auth_token: str
    whatsapp_app_secret: str
    whatsapp_verify_token: str
    whatsapp_access_token: str
    rbm_client_token: str
    rbm_access_token: str
    email_inbound_secret: str

    @classmethod
    def generate(cls) -> SimulatorSecrets:
        return cls(**{name: secrets.token_urlsafe(24) for name in cls.__struct_fields__})


def simulator_secrets(data_dir: Path) -> SimulatorSecrets:
    """The data directory's simulator secrets, created on first use."""
    path = data_dir / "simulator-secrets.json"
    if path.exists():
        return msgspec.json.decode(path.read_bytes(), type=SimulatorSecrets)
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f"{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(msgspec.json.encode(SimulatorSecrets.generate()))
    try:
        os.link(draft, path)  # atomic and exclusive: a process starting beside us keeps one value
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return msgspec.json.decode(path.read_bytes(), type=SimulatorSecrets)


def _simulated(config: Config, secret: SimulatorSecrets) -> dict:
    """Config changes that point every channel without real credentials at the simulator.

    Channels with real credentials keep talking to their providers; the ones simulated are named
    in ``simulated_channels`` (the banner and ``/readyz`` show them).
    """
    real = config.real_channels
    simulator_url = f"http://127.0.0.1:{config.simulator_port}"
    changes: dict = {"simulator": True}
    simulated: list[Channel] = []
    if Channel.SMS not in real:
        simulated += [Channel.SMS, Channel.VOICE]
        changes["twilio"] = msgspec.structs.replace(
            config.twilio,
            account_sid=SIMULATOR_ACCOUNT_SID,
            auth_token=secret.twilio_auth_token,
            base_url=simulator_url,
        )
    if Channel.WHATSAPP not in real:
        simulated.append(Channel.WHATSAPP)
        changes["whatsapp"] = msgspec.structs.replace(
            config.whatsapp,
            app_secret=secret.whatsapp_app_secret,
            verify_token=secret.whatsapp_verify_token,
            access_token=secret.whatsapp_access_token,
            phone_number_id=SIMULATOR_WHATSAPP_PHONE_NUMBER_ID,
            base_url=simulator_url,
        )
    if Channel.RCS not in real:
        simulated.append(Channel.RCS)
        changes["rbm"] = msgspec.structs.replace(
            config.rbm,
            client_token=secret.rbm_client_token,
            agent_id=SIMULATOR_RBM_AGENT_ID,
            access_token=secret.rbm_access_token,
            base_url=simulator_url,
        )
    if Channel.EMAIL not in real:
        simulated.append(Channel.EMAIL)
        changes["email"] = msgspec.structs.replace(
            config.email,
            smtp_url=f"smtp://127.0.0.1:{config.simulator_smtp_port}",
            inbound_secret=config.email.inbound_secret or secret.email_inbound_secret,
        )
    changes["simulated_channels"] = sorted(simulated)
    return changes


def _child_url_file(data_dir: Path) -> Path:
    return data_dir / "redis" / "url"


def _embedded_key_prefix(data_dir: Path) -> str:
    """The embedded default's own key prefix, kept in the data dir (``tl-`` and 8 hex digits)."""
    path = data_dir / "key-prefix"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{DEFAULT_KEY_PREFIX}-{secrets.token_hex(4)}"
    path.write_text(prefix + "\n")
    return prefix


def key_prefix(config: Config) -> str:
    """The configured prefix; else the embedded default's own (no ``redis_url``); else ``tl``."""
    if config.key_prefix:
        return config.key_prefix
    if not config.redis_url:
        return _embedded_key_prefix(Path(config.data_dir))
    return DEFAULT_KEY_PREFIX


def running_redis_url(config: Config) -> str | None:
    """The Redis ``serve`` uses, without starting one: configured, at the probe, or its child."""
    if config.redis_url:
        return config.redis_url
    host, port = parse_host_port(config.redis_probe)
    if port_open(host, port):
        return f"redis://{host}:{port}/0"
    url_file = _child_url_file(Path(config.data_dir))
    if url_file.exists():
        url = url_file.read_text().strip()
        host_port = url.removeprefix("redis://").split("/")[0]
        host, _, child_port = host_port.rpartition(":")
        if child_port.isdigit() and port_open(host, int(child_port)):
            return url
    return None


def resolve_embedded(config: Config, port: int) -> tuple[Config, subprocess.Popen | None]:
    """Fill what a local, account-free run needs; returns the config and a Redis child, if any."""
    data_dir = Path(config.data_dir)
    redis_child = None
    changes: dict = {"key_prefix": key_prefix(config)}
    if not config.redis_url:
        host, probe_port = parse_host_port(config.redis_probe)
        if port_open(host, probe_port):
            changes["redis_url"] = f"redis://{host}:{probe_port}/0"
        else:
            redis_port = (
                EMBEDDED_REDIS_PORT if not port_open("127.0.0.1", EMBEDDED_REDIS_PORT) else free_port()
            )
            redis_child = start_redis_server(data_dir / "redis", redis_port, config.redis_probe)
            changes["redis_url"] = f"redis://127.0.0.1:{redis_port}/0"
            # So ``threadline agents`` finds this Redis while ``serve`` runs.
            _child_url_file(data_dir).write_text(changes["redis_url"] + "\n")
    if not config.public_url:
        changes["public_url"] = f"http://127.0.0.1:{port}"
    if not config.api_keys:
        changes["api_keys"] = [_dev_api_key(data_dir)]
    if not config.secret_key:
        changes["secret_key"] = _persisted_secret(data_dir / "secret-key", "")
    if config.uses_simulator:
        changes.update(_simulated(config, simulator_secrets(data_dir)))
    else:
        changes["simulated_channels"] = []
    return msgspec.structs.replace(config, **changes), redis_child
