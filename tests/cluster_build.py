"""Embedding and an index build on a simulated 4-node cluster that loses a worker node in the
middle of the fill (run as a script by tests/index/test_cluster_build.py, in its own process:
it starts its own Ray cluster).

``python -m tests.cluster_build OUT_DIR`` starts a head with no CPUs (it holds the drivers,
as a cluster's head does) and three worker nodes (1 CPU, 2 GiB of task memory each), then runs
the commands a user would, each as its own process with ``RAY_ADDRESS`` set to the cluster:

1. ``echoseek embed`` of a small dataset (raw pixels);
2. ``echoseek index build --json`` of 24 000 clustered vectors with ids in 6 shards, where the
   first attempt at shard 2 writes its node to a marker and waits
   (:func:`tests.faults.fill_waiting_for_node_loss`); this script then removes that node.

It prints one JSON line: the build's summary, the removed node, the workers and the nodes
alive at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from echoseek.data.vectors import write_vectors
from tests.datasets import ingested_stack, random_stack
from tests.index_fixtures import clustered
from tests.script_process import ROOT, remove_when_marked

N, DIM, SHARDS, LOST_SHARD = 24_000, 32, 6, 2
BUILD_WITH_NODE_LOSS = """
import sys
from pathlib import Path
import cloudpickle
import echoseek.index.build as build
import tests.faults as faults

cloudpickle.register_pickle_by_value(faults)
build.fill_from_source = faults.fill_waiting_for_node_loss(Path(sys.argv[1]), int(sys.argv[2]))
from echoseek.cli import main
sys.exit(main(["index", "build", "--json", *sys.argv[3:]]))
"""


def vectors_input(out: Path) -> Path:
    """A vectors artifact of ``N`` clustered vectors with string ids."""
    x = clustered(N, DIM, 60, seed=11)
    ids = [f"frame-{i}" for i in range(N)]
    batches = ((ids[s : s + 4096], x[s : s + 4096]) for s in range(0, N, 4096))
    write_vectors(out, batches, DIM, model_uri="pixels", rows_per_file=5_000)
    return out


def command(args: list[str], address: str, out: Path, name: str) -> str:
    """Run ``args`` as a user would, against the cluster; its stdout (stderr kept in ``out``)."""
    env = {**os.environ, "RAY_ADDRESS": address}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    (out / f"{name}.stderr").write_text(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} exited {proc.returncode}: {proc.stderr[-3000:]}")
    return proc.stdout


def main(out: Path) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=1, memory=2 << 30) for _ in range(3)]
    cluster.wait_for_nodes()
    try:
        dataset = ingested_stack(out, random_stack(16, 16, 40, seed=3), labelled=40, shard_size=10)
        exe = str(Path(sys.executable).parent / "echoseek")
        embedded = out / "embedded"
        command([exe, "embed", f"input={dataset}", f"output={embedded}", "model=pixels",
                 "pixel_size=8"], cluster.address, out, "embed")  # fmt: skip
        source = vectors_input(out / "vectors")
        marker, removed = out / "node-of-shard", []
        watcher = threading.Thread(
            target=remove_when_marked, args=(cluster, nodes, marker, removed), daemon=True
        )
        watcher.start()
        args = [f"input={source}", f"output={out / 'index'}", f"build.num_shards={SHARDS}"]
        args += ["index.nlist=64", "build.calibration_queries=100"]
        build = command([sys.executable, "-c", BUILD_WITH_NODE_LOSS, str(marker),
                         str(LOST_SHARD), *args], cluster.address, out, "build")  # fmt: skip
        watcher.join(timeout=5)
        ray.init(address=cluster.address, log_to_driver=False)
        alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        summary = json.loads(build[build.index("{") :])
        return {
            "summary": summary,
            "removed": removed,
            "alive": alive,
            "workers": sorted(n.node_id for n in nodes),
            "embedded": str(embedded),
            "vectors": str(source),
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    found = main(Path(sys.argv[1]))
    print(json.dumps(found, default=str))
