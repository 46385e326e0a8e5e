"""The journey side of agent handoff, for the console: who is paused, and how to hand back.

A journey's ``handoff`` step pauses the instance and sets, in the customer's handoff hash
(``Keys.journey_handoff(customer_id)``), the field ``<journey name>`` to ``"paused"``.
While any field is ``"paused"``, automation is waiting for an agent.

To hand back, the console either

- calls ``release`` (outside a batch) or ``release_in`` (inside its own batch pipeline): the key
  is cleared and a ``JourneyHandback`` entry wakes the customer's home shard, which resumes
  every paused journey of the customer in its next batch; or
- just flips the key (HDEL the fields, DEL the key, or set them to anything but ``"paused"``):
  the paused journeys then resume at the customer's next stimulus (a message, status or event).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from conversations.codec import encode
from conversations.models import JourneyHandback
from conversations.sharding import shard_for_customer
from conversations.store import INGEST_FIELD, Keys

PAUSED = "paused"


async def paused_journeys(redis: Redis, keys: Keys, customer_id: str) -> list[str]:
    """Names of the customer's journeys waiting for an agent to hand back."""
    fields = await redis.hgetall(keys.journey_handoff(customer_id))
    return sorted(name.decode() for name, value in fields.items() if value.decode() == PAUSED)


def release_in(pipe: Pipeline, keys: Keys, shards: int, customer_id: str, at: float, agent: str = "") -> None:
    """Queue the handback on ``pipe`` (a console running inside a shard batch uses this)."""
    home = shard_for_customer(customer_id, shards)
    if home is None:
        raise ValueError(f"not a customer id: {customer_id!r}")
    pipe.delete(keys.journey_handoff(customer_id))
    pipe.xadd(keys.ingest(home), {INGEST_FIELD: encode(JourneyHandback(customer_id, at, agent))})


async def release(
    redis: Redis, keys: Keys, shards: int, customer_id: str, at: float, agent: str = ""
) -> None:
    """Hand the customer back to automation now: clear the key and wake the home shard, atomically."""
    pipe = redis.pipeline(transaction=True)
    release_in(pipe, keys, shards, customer_id, at, agent)
    await pipe.execute()
