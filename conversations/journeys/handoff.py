"""The journey side of agent handoff: one switch shared with the agent console.

The switch is the console's conversation hash (``Keys.conversation(customer_id)``), field
``automation``: ``"paused"`` or ``"active"`` (the values of ``conversations.console.Automation``).

- A journey's ``handoff`` step sets it to ``"paused"``. The instance then waits for an agent.
- The console's ``handback`` sets it to ``"active"``, and also submits a ``JourneyHandback``
  entry (``handback_entry``) to the customer's home shard. The shard resumes every journey
  paused at a handoff step in its next batch.
- A writer that only flips the field (no entry) resumes them too, at the customer's next
  stimulus (a message, a status or an event). ``release`` does both, for code outside the
  console.

When a journey ends or its handoff times out, it sets ``"active"`` again unless an agent holds
the conversation (``assignee`` is set).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from conversations import stream_entries
from conversations.models import JourneyHandback
from conversations.sharding import shard_for_customer
from conversations.slots import SlotMap
from conversations.store import Keys

AUTOMATION_FIELD = "automation"
ASSIGNEE_FIELD = "assignee"
PAUSED = "paused"
ACTIVE = "active"


def handback_entry(customer_id: str, at: float, agent: str = "") -> JourneyHandback:
    """The ingest entry that wakes the customer's paused journeys (submit it to the home shard)."""
    return JourneyHandback(customer_id, at, agent)


async def automation_paused(redis: Redis, keys: Keys, customer_id: str) -> bool:
    """Whether automation for the customer waits for an agent."""
    value = await redis.hget(keys.conversation(customer_id), AUTOMATION_FIELD)
    return value is not None and value.decode() == PAUSED


def release_in(
    pipe: Pipeline, keys: Keys, slot_map: SlotMap, customer_id: str, at: float, agent: str = ""
) -> None:
    """Queue a handback on ``pipe``: automation active, and the home shard woken."""
    home = shard_for_customer(customer_id, slot_map)
    if home is None:
        raise ValueError(f"not a customer id: {customer_id!r}")
    pipe.hset(keys.conversation(customer_id), AUTOMATION_FIELD, ACTIVE)
    stream_entries.append(pipe, keys.ingest(home), handback_entry(customer_id, at, agent))


async def release(
    redis: Redis, keys: Keys, slot_map: SlotMap, customer_id: str, at: float, agent: str = ""
) -> None:
    """Hand the customer back to automation now (atomically: the switch and the wake-up)."""
    pipe = redis.pipeline(transaction=True)
    release_in(pipe, keys, slot_map, customer_id, at, agent)
    await pipe.execute()
