"""Routing: which channel carries a message, the fallback chain, and why (plain domain code)."""
