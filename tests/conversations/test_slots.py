"""Slots and the slot map: ids name slots, slots map onto shards, old ids keep resolving."""

from __future__ import annotations

import hashlib
import os

import pytest

from conversations.config import ConfigError, load_config
from conversations.ids import new_customer_id
from conversations.models import Identifier, IdentifierKind
from conversations.sharding import shard_for_customer, shard_for_identifier
from conversations.slots import (
    DEFAULT_SLOTS,
    default_slot_map,
    move_slot,
    shard_of_slot,
    slot_for_identifier,
    slot_of_customer,
    slots_of_shard,
)

OLD_DEFAULT_SHARDS = 16  # what ids named before slots existed


def _old_shard_for_identifier(identifier: Identifier, shards: int) -> int:
    """The pre-slot rule, kept here to prove the new one agrees with it where it must."""
    digest = hashlib.blake2b(f"{identifier.kind}:{identifier.value}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % shards


def test_a_new_customer_id_names_its_slot() -> None:
    customer_id = new_customer_id(1000)
    assert customer_id.startswith("cus_1000_")
    assert slot_of_customer(customer_id, DEFAULT_SLOTS) == 1000
    assert shard_for_customer(customer_id, default_slot_map(DEFAULT_SLOTS, 2)) == 0


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 16])
def test_an_old_id_names_its_old_shard_which_reads_as_that_slot(shards: int) -> None:
    slot_map = default_slot_map(DEFAULT_SLOTS, shards)
    for old_shard in range(OLD_DEFAULT_SHARDS):
        old_id = f"cus_{old_shard}_01JD6ZQ1V7C6N4W9X3Y2Z1A0BC"
        assert slot_of_customer(old_id, DEFAULT_SLOTS) == old_shard
        assert shard_for_customer(old_id, slot_map) == old_shard % shards


def test_with_the_old_shard_count_nothing_moves() -> None:
    # A deployment that keeps 16 shards keeps every old customer, and every identifier, where it was.
    slot_map = default_slot_map(DEFAULT_SLOTS, OLD_DEFAULT_SHARDS)
    for old_shard in range(OLD_DEFAULT_SHARDS):
        assert shard_for_customer(f"cus_{old_shard}_01TEST", slot_map) == old_shard
    for n in range(500):
        identifier = Identifier(IdentifierKind.PHONE, f"+1555{n:07d}")
        assert shard_for_identifier(identifier, slot_map) == _old_shard_for_identifier(identifier, 16)


@pytest.mark.parametrize(
    "customer_id",
    ["", "cus_", "cus_x_01", "cus_-1_01", "cus_1_2_3", "usr_1_01", f"cus_{DEFAULT_SLOTS}_01", "cus_²_01"],
)
def test_ids_that_name_no_slot_of_ours_resolve_to_nothing(customer_id: str) -> None:
    assert slot_of_customer(customer_id, DEFAULT_SLOTS) is None
    assert shard_for_customer(customer_id, default_slot_map(DEFAULT_SLOTS, 2)) is None


def test_the_default_map_spreads_slots_evenly_and_owns_each_once() -> None:
    slot_map = default_slot_map(DEFAULT_SLOTS, 3)
    owned = [slots_of_shard(slot_map, shard) for shard in range(3)]
    assert sorted(slot for slots in owned for slot in slots) == list(range(DEFAULT_SLOTS))
    assert [len(slots) for slots in owned] == [342, 341, 341]
    assert all(shard_of_slot(slot_map, slot) == shard for shard in range(3) for slot in owned[shard])


def test_moving_a_slot_changes_its_owner_only() -> None:
    before = default_slot_map(64, 4)
    after = move_slot(before, 5, 3)
    assert shard_of_slot(after, 5) == 3 and shard_of_slot(before, 5) == 1
    assert [o for s, o in enumerate(after.owners) if s != 5] == [
        o for s, o in enumerate(before.owners) if s != 5
    ]
    customer_id = new_customer_id(5)
    assert (shard_for_customer(customer_id, before), shard_for_customer(customer_id, after)) == (1, 3)
    with pytest.raises(ValueError):
        move_slot(before, 5, 4)


def test_an_identifier_goes_to_the_owner_of_its_slot() -> None:
    identifier = Identifier(IdentifierKind.EMAIL, "ada@example.com")
    slot = slot_for_identifier(identifier, DEFAULT_SLOTS)
    slot_map = move_slot(default_slot_map(DEFAULT_SLOTS, 2), slot, 1 - slot % 2)
    assert shard_for_identifier(identifier, slot_map) == 1 - slot % 2


def test_the_default_shard_count_is_the_core_count_and_a_setting_overrides_it() -> None:
    assert load_config(env={}).shards == (os.cpu_count() or 1)
    assert load_config(env={}).slots == DEFAULT_SLOTS
    assert load_config(env={"THREADLINE_SHARDS": "6"}).shards == 6
    config = load_config(env={"THREADLINE_SLOTS": "64", "THREADLINE_SHARDS": "4"})
    assert config.slot_map().owners[:6] == (0, 1, 2, 3, 0, 1)
    with pytest.raises(ConfigError, match="shards"):
        load_config(env={"THREADLINE_SLOTS": "8", "THREADLINE_SHARDS": "9"})
    with pytest.raises(ConfigError, match="slots"):
        load_config(env={"THREADLINE_SLOTS": "0"})
