"""Slots and the slot map: where a customer lives, and which shard serves it.

A customer's home is a *slot*, a number below the deployment's fixed ``slots`` (1,024 by
default) written into the customer id, so it never changes. Slots map onto shards (one Ray
actor each) through a slot map; the number of shards can change (more machines, more cores)
without changing any id: only the map changes. Pure functions and one frozen struct.

Ids written before slots existed (``cus_<shard>_…``, shards fixed at 16 by default) read as
slot ``<shard>``: the number in an old id *is* its slot. With the default map (slot ``s`` on
shard ``s % shards``) a deployment that keeps its old shard count keeps every old customer on
the shard that created it, and any other count spreads the old customers evenly.
"""

from __future__ import annotations

import hashlib

import msgspec

from conversations.ids import home_slot_of
from conversations.models import Identifier

DEFAULT_SLOTS = 1024
MAX_SLOTS = 16384


class SlotMap(msgspec.Struct, frozen=True):
    """Which shard owns each slot: ``owners[slot]`` is a shard number below ``shards``."""

    owners: tuple[int, ...]
    shards: int

    @property
    def slots(self) -> int:
        """How many slots the deployment has (fixed for its lifetime)."""
        return len(self.owners)


def default_slot_map(slots: int, shards: int) -> SlotMap:
    """Slot ``s`` on shard ``s % shards``: even spread, and old ids stay on their old shard."""
    if not 1 <= shards <= slots:
        raise ValueError(f"shards must be between 1 and the slot count ({slots}), not {shards}")
    return SlotMap(tuple(slot % shards for slot in range(slots)), shards)


def shard_of_slot(slot_map: SlotMap, slot: int) -> int:
    """The shard that owns ``slot``."""
    return slot_map.owners[slot]


def slots_of_shard(slot_map: SlotMap, shard: int) -> tuple[int, ...]:
    """The slots ``shard`` owns, in order."""
    return tuple(slot for slot, owner in enumerate(slot_map.owners) if owner == shard)


def move_slot(slot_map: SlotMap, slot: int, shard: int) -> SlotMap:
    """The map with ``slot`` owned by ``shard`` (a new map; ids and keys do not change)."""
    if not 0 <= shard < slot_map.shards:
        raise ValueError(f"no shard {shard} in a map of {slot_map.shards}")
    owners = list(slot_map.owners)
    owners[slot] = shard
    return SlotMap(tuple(owners), slot_map.shards)


def slot_for_identifier(identifier: Identifier, slots: int) -> int:
    """Stable across processes and machines (unlike ``hash()``): blake2b of ``kind:value``."""
    digest = hashlib.blake2b(f"{identifier.kind}:{identifier.value}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % slots


def slot_of_customer(customer_id: str, slots: int) -> int | None:
    """The home slot a customer id names (old ``cus_<shard>_…`` ids: slot ``<shard>``), or None."""
    slot = home_slot_of(customer_id)
    if slot is None or slot >= slots:
        return None
    return slot
