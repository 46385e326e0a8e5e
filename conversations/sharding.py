"""Which shard owns what: the slot of an identifier or of a customer id, through the slot map."""

from __future__ import annotations

from conversations.models import Identifier
from conversations.slots import SlotMap, shard_of_slot, slot_for_identifier, slot_of_customer


def shard_for_identifier(identifier: Identifier, slot_map: SlotMap) -> int:
    """The shard that owns the identifier's slot (stable across processes and machines)."""
    return slot_map.owners[slot_for_identifier(identifier, slot_map.slots)]


def shard_for_customer(customer_id: str, slot_map: SlotMap) -> int | None:
    """The shard that owns the customer's home slot, or None when the id is malformed or out of range."""
    slot = slot_of_customer(customer_id, slot_map.slots)
    return None if slot is None else shard_of_slot(slot_map, slot)
