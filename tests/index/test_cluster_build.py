"""Embedding and an index build on a simulated 4-node cluster (``ray.cluster_utils.Cluster``)
driven through ``RAY_ADDRESS``, with a worker node removed while it fills a shard: the build
still publishes a complete, verified version, its shards filled on several nodes, and that
version is the same, file for file, as a one-node build of the same input.

The run (tests/cluster_build.py, in its own process) starts with the test session
(tests/conftest.py); this test waits for it and checks what it left."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from echoseek.data.vectors import open_vectors, read_rows
from echoseek.index import build_index, choose_params, open_index, read_manifest
from echoseek.index.publish import resolve_version_dir
from tests.cluster_build import LOST_SHARD, SHARDS
from tests.script_process import finished

pytestmark = pytest.mark.slow


def test_a_build_survives_a_lost_node_and_equals_a_one_node_build(
    cluster_build_run: tuple[subprocess.Popen[str], Path] | None, tmp_path: Path
) -> None:
    found, out = finished(cluster_build_run, timeout_s=600)
    (removed,) = found["removed"]  # the node filling shard LOST_SHARD went away
    assert removed in found["workers"] and removed not in found["alive"]
    assert (out / "node-of-shard").read_text() == removed

    fills = found["summary"]["shard_fills"]
    assert [f["rows"] for f in fills] == [24_000 // SHARDS] * SHARDS
    nodes = {f["node_id"] for f in fills}
    assert len(nodes) >= 2 and nodes <= set(found["workers"])
    assert fills[LOST_SHARD]["node_id"] != removed  # retried on a node still alive

    version = resolve_version_dir(out / "index")
    with open_index(out / "index") as index:  # every file checked against its sha256
        assert index.ntotal == 24_000
    assert not list(version.glob(".*.tmp"))  # the dead attempt left nothing behind

    source = open_vectors(found["vectors"])
    params = choose_params(source.count, source.dim, nlist=64)
    one = build_index(source, tmp_path / "one", params, num_shards=SHARDS, use_ray=False,
                      calibration_queries=100)  # fmt: skip
    cluster = read_manifest(version)
    assert one["trained"]["sha256"] == cluster["trained"]["sha256"]
    assert [s["sha256"] for s in one["shards"]] == [s["sha256"] for s in cluster["shards"]]
    assert one["default_nprobe"] == cluster["default_nprobe"]
    q = read_rows(source, np.arange(0, 24_000, 1_200))
    with open_index(out / "index") as a, open_index(tmp_path / "one") as b:
        np.testing.assert_array_equal(a.search(q, 10)[1], b.search(q, 10)[1])

    embedded = open_vectors(found["embedded"])  # `echoseek embed` on the cluster
    assert embedded.count == 40 and embedded.dim == 64 and embedded.has_ids
