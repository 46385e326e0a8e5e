"""The simulator's settings: what every provider module of it reads (no provider imports here)."""

from __future__ import annotations

import msgspec

from channels.simulator.fixed_credentials import (
    SIMULATOR_RBM_ACCESS_TOKEN,
    SIMULATOR_RBM_AGENT_ID,
    SIMULATOR_RBM_CLIENT_TOKEN,
)
from channels.simulator.whatsapp import WhatsAppSimulatorSettings


class SimulatorSettings(msgspec.Struct, frozen=True):
    """How the simulator authenticates callers and where it reaches the gateway."""

    account_sid: str
    auth_token: str
    gateway_url: str
    callback_delay: float = 0.02
    sink: bool = False  # benchmark mode: accept sends, post no callbacks
    rbm_client_token: str = SIMULATOR_RBM_CLIENT_TOKEN
    rbm_access_token: str = SIMULATOR_RBM_ACCESS_TOKEN
    rbm_agent_id: str = SIMULATOR_RBM_AGENT_ID
    whatsapp: WhatsAppSimulatorSettings = msgspec.field(default_factory=WhatsAppSimulatorSettings)
    smtp_port: int = 0  # the SMTP sink's port (0: no SMTP sink)
    email_inbound_secret: str = ""  # what simulated inbound emails present to the gateway
