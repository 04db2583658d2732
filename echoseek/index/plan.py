"""Shard plans: which contiguous rows of the input each shard of a build holds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from echoseek.errors import InputError

ROWS_PER_SHARD = 1_000_000


@dataclass(frozen=True)
class ShardPlan:
    """Shard ``shard`` holds input rows ``[start, stop)`` as ids ``id_start + (row − start)``."""

    shard: int
    start: int
    stop: int
    id_start: int

    @property
    def count(self) -> int:
        return self.stop - self.start


def plan_shards(
    n: int, num_shards: int, first_shard: int = 0, id_start: int = 0
) -> list[ShardPlan]:
    """Split rows ``[0, n)`` into ``num_shards`` contiguous, balanced, non-empty slices."""
    if n <= 0:
        raise InputError("nothing to index: the input has no vectors")
    if num_shards <= 0:
        raise InputError(f"num_shards must be positive, got {num_shards}")
    s = min(num_shards, n)
    bounds = [n * i // s for i in range(s + 1)]
    return [
        ShardPlan(first_shard + i, bounds[i], bounds[i + 1], id_start + bounds[i]) for i in range(s)
    ]


def auto_num_shards(n: int, rows_per_shard: int = ROWS_PER_SHARD) -> int:
    """``ceil(n / rows_per_shard)``, at least 1."""
    return max(1, math.ceil(n / max(1, rows_per_shard)))
