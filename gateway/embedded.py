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

# Identifiers, not secrets: the simulator's secrets are random per data directory.
from channels.simulator.fixed_credentials import (
    SIMULATOR_ACCOUNT_SID,
    SIMULATOR_RBM_AGENT_ID,
    SIMULATOR_WHATSAPP_PHONE_NUMBER_ID,
)
from conversations.config import Config
from conversations.models import Channel

DEFAULT_REDIS = ("127.0.0.1", 6379)


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


def start_redis_server(data_dir: Path, port: int) -> subprocess.Popen:
    """A child ``redis-server`` with AOF on (appendfsync everysec) in ``data_dir``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "no Redis answers on 127.0.0.1:6379 and redis-server is not installed; "
            "install it (apt-get install redis-server) or set THREADLINE_REDIS_URL"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
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
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start; see {data_dir / 'redis.log'}")
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


def resolve_embedded(config: Config, port: int) -> tuple[Config, subprocess.Popen | None]:
    """Fill what a local, account-free run needs; returns the config and a Redis child, if any."""
    data_dir = Path(config.data_dir)
    redis_child = None
    changes: dict = {}
    if not config.redis_url:
        if port_open(*DEFAULT_REDIS):
            changes["redis_url"] = "redis://127.0.0.1:6379/0"
        else:
            redis_port = 6390 if not port_open("127.0.0.1", 6390) else free_port()
            redis_child = start_redis_server(data_dir / "redis", redis_port)
            changes["redis_url"] = f"redis://127.0.0.1:{redis_port}/0"
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
