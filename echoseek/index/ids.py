"""The build's id check on Ray: every external id non-null and unique, in bounded memory.

A map-reduce over 64-bit id hashes (:func:`~echoseek.data.vectors.id_hash_partitions`,
:func:`~echoseek.data.vectors.repeated_hashes`): map task ``i`` hashes the ids of shard ``i``'s
rows and splits the hashes into ``P`` partitions by ``hash % P`` (one Ray object each); reduce
task ``j`` sorts partition ``j`` of every map task and returns the hashes seen twice. With ``P``
the shard count each task holds about ``8·N/P`` bytes; the driver holds only the repeated
hashes (at most 1000), whose rows are then compared exactly
(:func:`~echoseek.data.vectors.find_duplicate`), so a 64-bit collision is not an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from echoseek.data.vectors import (
    VectorSource,
    find_duplicate,
    id_hash_partitions,
    id_hashes,
    repeated_hashes,
)
from echoseek.index.plan import ShardPlan
from echoseek.index.tasks import WORKER_BASE_BYTES, Placement, gather, submit

HASH_BYTES = 8
ID_TEXT_BYTES = 120  # a Python str id and its list slot, per row of a batch


def check_unique_ids(
    source: VectorSource,
    plans: Sequence[ShardPlan],
    batch_size: int,
    use_ray: bool,
) -> None:
    """Raise :class:`~echoseek.errors.InputError` naming a null or repeated id of ``source``
    (inputs without ids pass)."""
    if not source.has_ids:
        return
    parts = len(plans)
    most = max(p.count for p in plans)
    maps = submit(
        id_hash_partitions if parts > 1 else id_hashes,
        [(source, p.start, p.stop, parts, batch_size) for p in plans],
        Placement(memory=map_memory(most, batch_size), num_cpus=0.5),
        use_ray,
        returns=parts,
    )
    by_map = [out if parts > 1 else [out] for out in maps.outputs]  # [map][partition]
    reduce_calls = [tuple(m[j] for m in by_map) for j in range(parts)]
    reduces = submit(
        repeated_hashes, reduce_calls, Placement(memory=reduce_memory(source.count, parts)), use_ray
    )
    twins = np.unique(np.concatenate([np.empty(0, np.uint64), *gather(reduces)]))
    if twins.size:
        find_duplicate(source, set(twins[:1000].tolist()), batch_size)


def map_memory(rows: int, batch_size: int) -> int:
    """A map task: its rows' hashes twice (array and partitions) and one batch of id strings."""
    return WORKER_BASE_BYTES + 2 * HASH_BYTES * rows + ID_TEXT_BYTES * batch_size


def reduce_memory(n: int, parts: int) -> int:
    """A reduce task: its partition (≈ n/parts hashes, with 2x slack for uneven buckets),
    concatenated and sorted."""
    return WORKER_BASE_BYTES + 3 * HASH_BYTES * (2 * n // parts + 1)
