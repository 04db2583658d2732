"""Shard groups sized by memory and their replicas' placement options (service.placement)."""

from __future__ import annotations

from typing import Any

import pytest

from echoseek.errors import ConfigError
from echoseek.index.params import IndexParams
from echoseek.service.placement import (
    REPLICA_BASE_BYTES,
    auto_groups,
    group_bytes,
    placement_note,
    searcher_options,
    shard_bytes,
)

GIB = 1 << 30


def manifest(shards: int, rows: int, dim: int = 128, m: int = 32) -> dict[str, Any]:
    params = IndexParams(kind="ivfpq", dim=dim, metric="ip", nlist=1024, m=m, nbits=8)
    return {
        "version": "v20261207T000000000000-abcdef",
        "dim": dim,
        "params": params.to_dict(),
        "shards": [{"count": rows, "id_start": i * rows} for i in range(shards)],
    }


def test_a_shard_keeps_its_codes_ids_float16_vectors_and_metadata() -> None:
    m = manifest(4, 1_000_000)
    assert shard_bytes(m, 0) == 1_000_000 * (32 + 8 + 2 * 128 + 64)  # 360 B per row
    # shards go to groups by modulo: group 1 of 3 holds shard 1 only (shards 0..3)
    assert group_bytes(m, 1, 3) == REPLICA_BASE_BYTES + shard_bytes(m, 1)
    assert group_bytes(m, 0, 3) == REPLICA_BASE_BYTES + 2 * shard_bytes(m, 0)


@pytest.mark.parametrize(
    ("shards", "rows", "budget_gib", "groups"),
    [
        (100, 1_000_000, 8, 5),  # 100 M × 128: at most 21 shards of 360 MB per 8 GiB replica
        (100, 1_000_000, 64, 1),  # 36 GB fits one replica of 64 GiB
        (4, 15, 8, 1),  # the demo: one group, not one per shard
        (10, 1_000_000, 1.25, 10),  # 768 MiB + one 343 MiB shard fit 1280 MiB, two do not
    ],
)
def test_the_default_groups_follow_the_index_size(
    shards: int, rows: int, budget_gib: float, groups: int
) -> None:
    m = manifest(shards, rows)
    budget = int(budget_gib * GIB)
    assert auto_groups(m, budget) == groups
    assert max(group_bytes(m, g, groups) for g in range(groups)) <= budget
    if groups > 1:  # the fewest: one group fewer does not fit
        assert max(group_bytes(m, g, groups - 1) for g in range(groups - 1)) > budget


def test_a_budget_below_one_shard_names_the_sizes() -> None:
    with pytest.raises(ConfigError, match=r"needs 1111 MiB, more than the budget of 1024 MiB"):
        auto_groups(manifest(3, 1_000_000), 1024 << 20)


def test_replicas_of_a_group_go_to_distinct_nodes_when_there_are_two() -> None:
    m = manifest(4, 1000)
    one, three = searcher_options(m, 1, 2, nodes=1), searcher_options(m, 1, 2, nodes=3)
    assert one["name"] == three["name"] == "ShardSearcher1"
    assert one["ray_actor_options"]["memory"] == group_bytes(m, 1, 2)
    assert "max_replicas_per_node" not in one and three["max_replicas_per_node"] == 1
    assert "share it" in placement_note(1, searchers=True)
    assert placement_note(3, searchers=True) == placement_note(1, searchers=False) == ""
