"""A team's shared tracking server (mlflow/README.md): a real ``mlflow server`` process on
127.0.0.1, and a pretraining job on local Ray that logs its params, metrics and model to it
over HTTP (artifacts proxied by the server into its own artifact root)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from echoseek.cli import main as cli
from tests.jobs.test_pretrain import config, pretrain_dataset

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` as the README starts it, on a free local port; (its URL, artifacts)."""
    port, artifacts = free_port(), tmp_path / "server-artifacts"
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(artifacts),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115 (closed with the process)
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield url, artifacts
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_training_job_logs_to_a_shared_tracking_server_over_http(
    ray_session: Any, mlflow_server: tuple[str, Path], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    url, artifacts = mlflow_server
    dataset = pretrain_dataset(tmp_path)
    overrides = {"optim.warmup_epochs": 0, "run.tracking_uri": url, "run.experiment": "team"}
    args = config(dataset, tmp_path, epochs=1, **{"run.name": "shared", **overrides})
    assert cli(["pretrain", *args]) == 0

    client = MlflowClient(url)  # read back over HTTP, as a teammate would
    runs = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert [r.info.run_name for r in runs] == ["shared"]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.params["batch_size"] == "8"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} >= {
        "model/model.json",
        "model/model.pt",
    }
    # the artifacts went through the server into its own artifact root, not a local path
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert list(artifacts.rglob("model.pt"))
