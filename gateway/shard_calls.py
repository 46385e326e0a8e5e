"""Calling a shard actor's direct commands from a handler, following 'ask that shard' replies."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gateway.errors import ApiError
from gateway.services import Services

R = TypeVar("R")

COMMAND_TIMEOUT_SECONDS = 10.0


async def call_shard(
    services: Services,
    shard: int,
    method: str,
    request: bytes,
    decode: Callable[[bytes], R],
    wrong_shard: Callable[[R], int | None],
) -> R:
    """Run ``method`` on ``shard``'s actor; if it answers that another shard owns the customer, ask
    that one (at most a few hops: a customer's home never changes)."""
    import asyncio

    if not services.shard_actors:
        raise ApiError(503, "shards_unavailable", "no shard actors are running", headers={"Retry-After": "5"})
    for _ in range(3):
        actor = services.shard_actors[shard]
        try:
            raw = await asyncio.wait_for(getattr(actor, method).remote(request), COMMAND_TIMEOUT_SECONDS)
        except TimeoutError:
            raise ApiError(
                503, "shard_timeout", f"shard {shard} did not answer in time", headers={"Retry-After": "2"}
            ) from None
        reply = decode(raw)
        next_shard = wrong_shard(reply)
        if next_shard is None:
            return reply
        shard = next_shard
    raise ApiError(503, "shard_routing_loop", "the customer's shard could not be settled; retry")
