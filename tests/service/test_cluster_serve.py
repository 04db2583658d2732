"""The search service on a simulated 4-node cluster (``ray.cluster_utils.Cluster``) driven
through ``RAY_ADDRESS`` with serve/multinode.local.yaml: replicas of a shard group on distinct
nodes, a worker node holding shard replicas removed under a closed-loop load with no failed
request, a swap that reaches every replica, and the answers of the one-node layout.

The run (tests/cluster_serve.py, in its own process) starts with the test session
(tests/conftest.py); this test waits for it and checks what it found."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.script_process import finished

pytestmark = pytest.mark.slow


def group_nodes(view: dict[str, Any]) -> list[list[str]]:
    return [[r["node_id"] for r in g["replicas"]] for g in view["groups"]]


def test_a_node_lost_under_load_fails_no_request_and_a_swap_reaches_every_replica(
    cluster_serve_run: tuple[subprocess.Popen[str], Path] | None,
) -> None:
    found, _ = finished(cluster_serve_run, timeout_s=900)
    workers, removed = set(found["workers"]), found["removed"]

    for view in (found["first"], found["after"]):  # two replicas per group, on two nodes
        for nodes in group_nodes(view):
            assert len(nodes) == 2 and len(set(nodes)) == 2 and set(nodes) <= workers, view
    assert any(removed in nodes for nodes in group_nodes(found["first"]))
    assert all(removed not in nodes for nodes in group_nodes(found["after"]))

    answers = found["answers"]
    assert len(answers) > 50 and {s for s, _ in answers} == {200}, answers[:5]  # 0 failed
    old = found["first"]["version"]
    assert found["swap_status"] == 200 and found["after"]["version"] == found["new"]
    assert {v for _, v in answers} <= {old, found["new"]}  # each answer names one version
    assert found["cluster_ids"] == found["local_ids"]  # the one-node layout's top 10
