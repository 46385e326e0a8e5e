"""HTTP routes, one module per surface (webhooks per provider, API per resource, health)."""
