"""The aiohttp gateway: webhooks, the HTTP API, the agent console, auth and errors."""
