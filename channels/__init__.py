"""Channel adapters: one module per channel/provider, behind the protocol in ``channels.base``."""
