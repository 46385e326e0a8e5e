"""Fixed credentials for tests and benchmarks that run their own simulator beside the gateway.

``threadline serve`` never uses these: its simulator secrets are random per data directory
(``gateway/embedded.py``), so nobody can sign a webhook with a value published here.
"""

from __future__ import annotations

SIMULATOR_ACCOUNT_SID = "AC" + "0" * 32
SIMULATOR_AUTH_TOKEN = "simulator-auth-token"
SIMULATOR_RBM_CLIENT_TOKEN = "simulator-rbm-client-token"
SIMULATOR_RBM_ACCESS_TOKEN = "simulator-rbm-access-token"
SIMULATOR_RBM_AGENT_ID = "threadline-simulator"
SIMULATOR_WHATSAPP_APP_SECRET = "simulator-whatsapp-app-secret"
SIMULATOR_WHATSAPP_VERIFY_TOKEN = "simulator-whatsapp-verify-token"
SIMULATOR_WHATSAPP_ACCESS_TOKEN = "simulator-whatsapp-access-token"
SIMULATOR_WHATSAPP_PHONE_NUMBER_ID = "106540352242922"
