"""How many shard groups a version is served in, the memory each replica asks for, and where
its replicas may run.

A searcher replica of a group holds, per row of its shards, the faiss codes and ids it reads
(``bytes_per_vector``), the float16 re-rank vectors it memory-maps (``2·dim``; resident as
they are touched, counted whole) and the metadata it loads for lookups
(:data:`METADATA_BYTES_PER_ROW`), plus the replica process itself
(:data:`REPLICA_BASE_BYTES`). Groups take shards by modulo
(:class:`~echoseek.service.searcher.ShardGroup`), so the default ``shard_groups`` is the
fewest groups whose largest fits the per-replica budget ``replica_memory_mib``: it follows the
index size (one group for the demo, a handful at 100 M), not the shard count.

A group's replicas ask Ray for that memory, and when the cluster has two nodes or more that
can run them, no two replicas of one group share a node (``max_replicas_per_node=1``): a lost
node takes one replica of a group, never all of them. On one node that cannot hold, and the
service says so when it starts (:func:`placement_note`).
"""

from __future__ import annotations

import math
from typing import Any

from echoseek.errors import ConfigError
from echoseek.index.params import IndexParams

# a Serve searcher replica with Ray, faiss, numpy and pyarrow: 715-736 MiB resident with a
# 10,000-row group on the simulated cluster (tests/cluster_serve.py, GET /v1/cluster)
REPLICA_BASE_BYTES = 768 << 20
METADATA_BYTES_PER_ROW = 64  # id, label, source and frame index as Arrow columns


def shard_bytes(manifest: dict[str, Any], shard: int) -> int:
    """What one shard of ``manifest`` keeps resident in a replica (see the module docstring)."""
    per_row = (
        IndexParams.from_dict(manifest["params"]).bytes_per_vector
        + 2 * int(manifest["dim"])
        + METADATA_BYTES_PER_ROW
    )
    return math.ceil(int(manifest["shards"][shard]["count"]) * per_row)


def group_bytes(manifest: dict[str, Any], group: int, groups: int) -> int:
    """The memory a replica of shard group ``group`` of ``groups`` asks for."""
    shards = range(group, len(manifest["shards"]), groups)
    return REPLICA_BASE_BYTES + sum(shard_bytes(manifest, i) for i in shards)


def auto_groups(manifest: dict[str, Any], budget_bytes: int) -> int:
    """The fewest shard groups whose largest replica fits ``budget_bytes``; a ConfigError
    naming the sizes when even one shard per group does not."""
    shards = len(manifest["shards"])
    for groups in range(1, shards + 1):
        if max(group_bytes(manifest, g, groups) for g in range(groups)) <= budget_bytes:
            return groups
    need = max(group_bytes(manifest, g, shards) for g in range(shards))
    raise ConfigError(
        f"replica_memory_mib: a replica of one shard of version {manifest['version']} needs "
        f"{need >> 20} MiB, more than the budget of {budget_bytes >> 20} MiB; raise it, or "
        "rebuild the index with smaller shards (build.rows_per_shard)"
    )


def spread_nodes() -> int:
    """Alive nodes that can run a replica (any CPU), or 0 when no Ray is connected here."""
    import ray

    if not ray.is_initialized():
        return 0
    return sum(1 for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0)


def searcher_options(manifest: dict[str, Any], group: int, groups: int, nodes: int) -> Any:
    """Serve deployment options of shard group ``group``: its memory, and one replica per node
    when ``nodes`` ≥ 2 (a Serve YAML's ``deployments:`` entry overrides them)."""
    options: dict[str, Any] = {
        "name": f"ShardSearcher{group}",
        "ray_actor_options": {"num_cpus": 0.1, "memory": group_bytes(manifest, group, groups)},
    }
    if nodes >= 2:
        options["max_replicas_per_node"] = 1
    return options


def placement_note(nodes: int, searchers: bool) -> str:
    """What the service says at start when the replicas of its shard groups (``searchers``)
    may share a node ("" when they cannot)."""
    if not searchers or nodes >= 2:
        return ""
    return (
        "one node runs every replica: the replicas of a shard group share it, so losing it "
        "takes the group (a cluster of two nodes or more places them apart)"
    )
