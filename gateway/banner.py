"""What ``threadline serve`` prints once ready: where it listens and commands to try it."""

from __future__ import annotations

import secrets
import shlex
from urllib.parse import quote

from channels.twilio_signature import compute_signature
from conversations.access import first_plain_key
from conversations.config import Config


def banner(config: Config, host: str, port: int, sign_in: str = "") -> str:
    """The ready banner: the gateway's URL, the console sign-in link and ready-to-paste curls."""
    url = f"http://{host}:{port}"
    lines = [
        f"Threadline gateway ready on {url}",
        f"  Redis {config.redis_url}, keys under {config.key_prefix}:*, {config.shards} shards",
    ]
    key = first_plain_key(config.api_keys) or "<api key>"
    phone = "+15550100000"
    if config.uses_simulator:
        sim = f"http://127.0.0.1:{config.simulator_port}"
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
        lines += [
            f"Provider simulator on {sim}",
            "",
            "Send a signed test SMS (as Twilio would):",
            f"  curl -s {webhook} -H 'X-Twilio-Signature: {signature}' {data}",
            "Or let a simulated customer text you:",
            f"  curl -s {sim}/simulator/inbound -H 'Content-Type: application/json' "
            f'-d \'{{"from": "{phone}", "body": "Hi there"}}\'',
            "Or on WhatsApp (Meta Cloud API format, signed):",
            f"  curl -s {sim}/simulator/whatsapp/inbound -H 'Content-Type: application/json' "
            f'-d \'{{"from": "{phone}", "body": "Hi on WhatsApp"}}\'',
        ]
    lines += [
        "Find the customer and read the thread:",
        f"  curl -s -H 'Authorization: Bearer {key}' '{url}/v1/customers?phone={quote(phone)}'",
        f"  curl -s -H 'Authorization: Bearer {key}' {url}/v1/customers/<id>/thread",
        'Reply to them (on SMS; leave out "channel" and routing picks it: WhatsApp first for service):',
        f"  curl -s -H 'Authorization: Bearer {key}' {url}/v1/messages "
        f'-d \'{{"to": {{"phone": "{phone}"}}, "channel": "sms", "body": "Thanks!"}}\'',
    ]
    if sign_in:
        lines += ["Open the agent console, signed in as the dev agent (the link works once):", f"  {sign_in}"]
    return "\n".join(lines)
