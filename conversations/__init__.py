"""The Threadline domain: identity, threads, messages and their Redis store (no aiohttp, no Ray)."""
