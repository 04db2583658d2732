"""A worker node lost mid-run on a simulated 2-node cluster (``ray.cluster_utils.Cluster``):
the run resumes from its last checkpoint on the remaining node and completes every epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_pretraining_resumes_on_the_remaining_node(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.two_node_resume", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    (removed,) = found["removed"]  # the last rank's node went away at epoch 1
    assert removed in found["workers"] and removed not in found["alive"]
    assert set(found["workers"]) - {removed} <= set(found["alive"])
    assert (tmp_path / "node-of-last-rank").read_text() == removed
    assert found["summary"]["epochs"] == 2
    checkpoints = sorted(p.name for p in (tmp_path / "ray" / "two-node").glob("epoch-*"))
    assert checkpoints == ["epoch-00000", "epoch-00001"]
    # resumed from the epoch-0 checkpoint: every epoch logged once, none run twice
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    history = client.get_metric_history(found["summary"]["run_id"], "loss")
    assert [m.step for m in history] == [0, 1]
