"""What ``threadline serve`` prints once ready: where it listens and commands to try it.

Every command is shell-safe as printed (quoted, no ``<placeholders>``), so a new user can
paste them in order: a simulated customer writes in, the API finds them and reads their
thread, and the console link signs in to see the same thread.
"""

from __future__ import annotations

import json
import secrets
import shlex
from pathlib import Path
from urllib.parse import quote

from channels.twilio_signature import compute_signature
from conversations.access import first_plain_key
from conversations.config import Config
from conversations.models import Channel

SAMPLE_PHONE = "+15550100000"
# Reads the first customer's id out of GET /v1/customers (python3 is there: Threadline runs on it).
_FIRST_ID = 'python3 -c \'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])\''


def _json(body: dict) -> str:
    """A JSON body as one shell word."""
    return shlex.quote(json.dumps(body))


def masked(key: str) -> str:
    """An API key as logs may show it: enough to tell keys apart, not to use one."""
    return key[:4] + "…" if len(key) >= 16 else "…"


def banner(config: Config, host: str, port: int, sign_in: str = "", dev_key_file: Path | None = None) -> str:
    """The ready banner: the gateway's URL, the console sign-in link and ready-to-paste commands.

    The API key is printed whole only when ``serve`` generated it (the dev key in the data dir,
    ``dev_key_file``); a configured key is masked and the commands read ``$THREADLINE_API_KEY``,
    so production keys stay out of container logs.
    """
    url = f"http://{host}:{port}"
    configured = first_plain_key(config.api_keys)
    generated = dev_key_file is not None and configured is not None
    key = configured if generated and configured else "$THREADLINE_API_KEY"
    # Double quotes, so the shell expands $THREADLINE_API_KEY; a generated key is shell-safe.
    auth = f'-H "Authorization: Bearer {key}"'
    phone = SAMPLE_PHONE
    lines = [
        f"Threadline gateway ready on {url}",
        f"  Redis {config.redis_url}, keys under {config.key_prefix}:*,"
        f" {config.shards} shards over {config.slots} slots",
    ]
    if dev_key_file is not None:
        lines.append(f"  The dev API key is kept in {dev_key_file}")
    elif configured is not None:
        lines.append(f"  API key {masked(configured)} (configured: export THREADLINE_API_KEY to paste these)")
    simulated = set(config.simulated_channels)
    if config.uses_simulator:
        lines.append(f"Provider simulator on http://127.0.0.1:{config.simulator_port}")
    if simulated:
        names = ", ".join(sorted(simulated))
        lines.append(f"Simulated channels (nothing leaves this machine on them): {names}")
    if sign_in:
        lines += [
            "",
            "Open the agent console, signed in as the dev agent (the link works once):",
            f"  {sign_in}",
        ]
    sim = f"http://127.0.0.1:{config.simulator_port}"
    if Channel.SMS in simulated:
        lines += [
            "",
            "Let a simulated customer text you (SMS):",
            f"  curl -s {sim}/simulator/inbound -H 'Content-Type: application/json' "
            f"-d {_json({'from': phone, 'body': 'Hi there'})}",
        ]
    if Channel.WHATSAPP in simulated:
        lines += [
            "Or on WhatsApp (Meta Cloud API format, signed):",
            f"  curl -s {sim}/simulator/whatsapp/inbound -H 'Content-Type: application/json' "
            f"-d {_json({'from': phone, 'body': 'Hi on WhatsApp'})}",
        ]
    if Channel.SMS in simulated:
        lines += [
            "Or send a signed test SMS yourself (as Twilio would):",
            f"  {_signed_sms(config, phone)}",
        ]
    find = f"{url}/v1/customers?phone={quote(phone)}"
    lines += [
        "Find the customer and read their thread:",
        f"  ID=$(curl -s {auth} {shlex.quote(find)} | {_FIRST_ID})",
        f'  curl -s {auth} "{url}/v1/customers/$ID/thread"',
        'Reply to them (on SMS; leave out "channel" and routing picks it: WhatsApp first for service):',
        f"  curl -s {auth} {url}/v1/messages "
        f"-d {_json({'to': {'phone': phone}, 'channel': 'sms', 'body': 'Thanks!'})}",
    ]
    return "\n".join(lines)


def _signed_sms(config: Config, phone: str) -> str:
    params = {
        "MessageSid": "SM" + secrets.token_hex(16),
        "AccountSid": config.twilio.account_sid,
        "From": phone,
        "To": config.twilio.from_number,
        "Body": "Hello from the README",
        "NumMedia": "0",
    }
    webhook = config.public_url + "/webhooks/twilio/sms"
    signature = compute_signature(config.twilio.auth_token, webhook, params.items())
    data = " ".join(f"--data-urlencode {shlex.quote(k + '=' + v)}" for k, v in params.items())
    return f"curl -s {webhook} -H 'X-Twilio-Signature: {signature}' {data}"
