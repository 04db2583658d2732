"""Pretraining on a simulated 2-node cluster that loses a node mid-run (run as a script by
tests/jobs/test_two_node_resume.py, in its own process: it starts its own Ray cluster).

``python -m tests.two_node_resume OUT_DIR`` starts a head (1 CPU, the driver and Ray Data) and
two worker nodes (1 CPU and 2 ``trainer`` slots each: Train workers need a slot, so they run on
worker nodes only), pretrains 2 epochs with 2 workers, removes the node of the last rank at
the start of epoch 1 (:class:`tests.faults.WaitForNodeLoss`), and prints one JSON line: the
job's summary, the removed node and the nodes alive at the end. tests/conftest.py starts it
when the test session starts (:func:`started`), so its node start-ups overlap other tests.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from echoseek.config import load_config
from echoseek.jobs import pretrain
from echoseek.training.pretrain import pretrain as pretrain_fn
from tests.faults import WaitForNodeLoss
from tests.jobs.test_pretrain import config, pretrain_dataset
from tests.script_process import remove_when_marked


def main(out: Path) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=1, resources={"trainer": 2}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        dataset = pretrain_dataset(out)
        overrides = config(dataset, out, epochs=2, val="", **{
            "run.name": "two-node", "scale.resources.trainer": 1, "scale.cpus_per_worker": 0.4,
            "scale.data_cpus": 0.2, "optim.warmup_epochs": 0})  # fmt: skip
        cfg = load_config(pretrain.Config, None, overrides)
        marker, removed = out / "node-of-last-rank", []
        watcher = threading.Thread(
            target=remove_when_marked, args=(cluster, nodes, marker, removed), daemon=True
        )
        watcher.start()
        summary = pretrain_fn(cfg, hooks=[WaitForNodeLoss(marker, epoch=1)])
        watcher.join(timeout=5)
        alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        workers = sorted(n.node_id for n in nodes)
        return {"summary": summary, "removed": removed, "alive": alive, "workers": workers}
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    found = main(Path(sys.argv[1]))
    print(json.dumps(found, default=str))
