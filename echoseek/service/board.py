"""One served version across every ingress replica, and who serves what where.

The *board* is a named Ray actor, one per service (detached, so it outlives any replica; no
CPU), on the head node: a worker node lost takes replicas, never the board (on the simulated
cluster a board placed on the removed node went with it).
It holds the version every ingress replica should serve (its *target*) and the last
report of every replica:

- a swap (``POST /v1/admin/index`` on whichever ingress replica the request reaches, or a
  ``serve deploy`` with a new ``user_config``) verifies and warms the version on that replica,
  switches it and posts it as the target; every other ingress replica reads the target every
  :data:`POLL_S` and swaps itself the same way, so within about a second every replica serves
  it. A request still searches one version from start to end and names it in its answer. A
  replica started later (autoscaling, a replacement) starts on the target;
- every replica (ingress and searchers) reports every :data:`POLL_S`: its role, shard group,
  node, the versions it holds open and its resident memory. ``GET /v1/cluster`` lists the
  replicas heard from within :data:`STALE_S`, by shard group.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from typing import Any

from echoseek.index.tasks import resident_bytes

NAMESPACE = "echoseek"
HEAD = "node:__internal_head__"  # the resource only the head node has (Serve's controller's)
POLL_S = 0.5
STALE_S = 10.0


class Board:
    """The target version and the replicas' last reports."""

    def __init__(self) -> None:
        self._target, self._seq = "", 0
        self._reports: dict[str, dict[str, Any]] = {}

    def reset(self, version: str) -> None:
        """A new deployment of the service: its first version, no replicas heard yet."""
        self._target, self._reports = version, {}
        self._seq += 1

    def post(self, version: str) -> int:
        """Make ``version`` the target; its sequence number (every post gets a higher one)."""
        self._target = version
        self._seq += 1
        return self._seq

    def target(self) -> tuple[int, str]:
        """The target's sequence number and version: a replica acts only on a number higher
        than the last it saw or posted, so a read from before its own swap never undoes it."""
        return self._seq, self._target

    def report(self, replica: str, info: dict[str, Any]) -> None:
        self._reports[replica] = {**info, "replica": replica, "seen": time.time()}

    def snapshot(self, stale_s: float = STALE_S) -> dict[str, Any]:
        """The target and the replicas heard from within ``stale_s``."""
        now = time.time()
        live = [r for r in self._reports.values() if now - r["seen"] <= stale_s]
        return {"target": self._target, "replicas": sorted(live, key=lambda r: r["replica"])}


def board_name(index: str) -> str:
    """The board of the service over index root ``index`` (one service per root and cluster)."""
    return "board-" + hashlib.sha256(index.encode()).hexdigest()[:16]


def board(index: str) -> Any:
    """The board of the service over ``index`` (created on first use)."""
    import ray

    actor = ray.remote(num_cpus=0, resources={HEAD: 0.001}, max_restarts=-1)(Board)
    return actor.options(
        name=board_name(index), namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()


def first_version(index: str, given: str) -> str:
    """The version a replica starting now opens: the board's target, which a replica started
    after swaps (a scale-up, a replacement) must serve, and which retention keeps, else the
    one its deployment was composed with."""
    import ray

    return str(ray.get(board(index).target.remote(), timeout=60)[1]) or given


def remove_board(index: str) -> None:
    """Kill the board of the service over ``index`` (it stops); nothing when there is none."""
    import ray

    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(board_name(index), namespace=NAMESPACE))


def replica_info(role: str, group: int | None, versions: list[str]) -> dict[str, Any]:
    """What a replica reports: role, group, node, pid, versions open, resident bytes."""
    import ray

    return {
        "role": role,
        "group": group,
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "versions": versions,
        "resident_bytes": resident_bytes(),
    }


def cluster_document(snapshot: dict[str, Any], groups: int) -> dict[str, Any]:
    """The ``GET /v1/cluster`` answer: the target version, the ingress replicas and each
    shard group's replicas (node, state, versions, resident bytes)."""
    replicas = snapshot["replicas"]

    def row(r: dict[str, Any]) -> dict[str, Any]:
        keys = ("replica", "node_id", "pid", "versions", "resident_bytes")
        state = "serving" if snapshot["target"] in r["versions"] else "loading"
        return {**{k: r[k] for k in keys}, "state": state}

    return {
        "version": snapshot["target"],
        "ingress": [row(r) for r in replicas if r["role"] == "ingress"],
        "groups": [
            {"group": g, "replicas": [row(r) for r in replicas if r["group"] == g]}
            for g in range(groups)
        ],
    }
