"""A worker node lost mid-run on a simulated 2-node cluster (``ray.cluster_utils.Cluster``):
the run resumes from its last checkpoint on the remaining node and completes every epoch.

The run (tests/two_node_resume.py, in its own process) starts with the test session
(tests/conftest.py); this test waits for it and checks what it left."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.script_process import finished

pytestmark = pytest.mark.slow


def test_pretraining_resumes_on_the_remaining_node(
    two_node_run: tuple[subprocess.Popen[str], Path] | None,
) -> None:
    from mlflow.tracking import MlflowClient

    found, tmp_path = finished(two_node_run, timeout_s=600)
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
