"""Per-customer, per-channel engagement: delivered / read / replied counts with exponential decay.

One Redis hash per customer holds ``<channel>:score`` and ``<channel>:at`` (when the score was
last brought up to date). The processor updates it inside its batch transaction with a small
script (so no read phase is needed); routing reads it with the customer context and decays it
to "now".
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio.client import Pipeline

from conversations.models import Channel
from conversations.store import Keys

HALF_LIFE_SECONDS = 14 * 86400.0  # two weeks: last month's replies count, last year's don't
WEIGHTS = {"delivered": 0.1, "read": 0.5, "replied": 1.0}

# KEYS[1] engagement hash. ARGV: channel, weight, at, half-life. Out-of-order events (a status
# older than the stored "at") are decayed to the stored time instead of moving it back.
_ADD = """
local score = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':score') or '0')
local at = tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. ':at') or ARGV[3])
local half = tonumber(ARGV[4])
local weight = tonumber(ARGV[2])
if at >= last then
  score = score * math.pow(2, -(at - last) / half) + weight
  last = at
else
  score = score + weight * math.pow(2, -(last - at) / half)
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':score', tostring(score), ARGV[1] .. ':at', tostring(last))
return tostring(score)
"""


def decayed(score: float, at: float, now: float) -> float:
    """A score recorded at ``at``, as it stands at ``now``."""
    if now <= at:
        return score
    return score * 2 ** (-(now - at) / HALF_LIFE_SECONDS)


def scores_from_hash(fields: Mapping[bytes, bytes], now: float) -> dict[Channel, float]:
    """The engagement hash as decayed scores per channel."""
    found: dict[Channel, float] = {}
    for channel in Channel:
        raw_score = fields.get(f"{channel.value}:score".encode())
        raw_at = fields.get(f"{channel.value}:at".encode())
        if raw_score is None or raw_at is None:
            continue
        found[channel] = decayed(float(raw_score), float(raw_at), now)
    return found


class EngagementRecorder:
    """Adds engagement events inside a batch pipeline."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    def record(self, pipe: Pipeline, customer_id: str, channel: Channel, event: str, at: float) -> None:
        """Count ``event`` (delivered, read or replied) for the customer on ``channel``."""
        # Plain EVAL, not EVALSHA: inside MULTI a NOSCRIPT error could not be retried cleanly.
        key = self._keys.engagement(customer_id)
        pipe.eval(_ADD, 1, key, channel.value, WEIGHTS[event], repr(at), repr(HALF_LIFE_SECONDS))
