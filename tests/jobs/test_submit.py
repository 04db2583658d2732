"""The cluster entry point: `ray job submit --working-dir . -- python -m echoseek.jobs.<job>`.

A real local head (`ray start --head`, dashboard and job server on 127.0.0.1, token auth on),
and a job submitted to it exactly as the README says: a chained sweep. Run as ``__main__``,
a job's config classes and worker loop must still resolve on the Train workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from echoseek.config import load_config
from echoseek.models import load_model
from echoseek.training.finetune import FinetuneConfig
from echoseek.training.pretrain import PretrainConfig
from tests.datasets import ingested_stack, random_stack

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def head() -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head in its own temp dir and ports, token auth on; yields (address, env)."""
    temp = tempfile.mkdtemp(prefix="es-ray-")  # short: Ray's socket paths have a length limit
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` = this venv's
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    proc, address = None, ""
    try:
        for attempt in range(3):  # a port picked free may be taken before Ray binds it
            proc, address = _start_head(temp, env, attempt)
            if _wait_for(address, proc):
                break
            with contextlib.suppress(ProcessLookupError):  # what it left of its process group
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            log = (Path(temp) / "start.log").read_text()[-2000:]
            raise RuntimeError(f"ray start exited three times; last output:\n{log}")
        yield address, env
    finally:  # a throwaway head: no graceful shutdown (30 s), nothing of it is kept
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def _start_head(
    temp: str, env: dict[str, str], attempt: int
) -> tuple[subprocess.Popen[bytes], str]:
    dashboard = free_port()
    # every port its own: the test session's Ray already holds the defaults (agent: 52365)
    ports = (
        "port",
        "ray-client-server-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    )
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block", *(f"--{p}={free_port()}" for p in ports),
        "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}", f"--temp-dir={temp}/{attempt}", "--disable-usage-stats",
    ]  # fmt: skip
    with open(Path(temp) / "start.log", "wb") as log:
        proc = subprocess.Popen(  # its own process group: every process of this head, to kill
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, f"http://127.0.0.1:{dashboard}"


def _wait_for(address: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> bool:
    """True once the head's job server answers; False when ``ray start`` exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            return True
        except OSError as exc:  # 401 (token auth) also means the job server is up
            if getattr(exc, "code", None) == 401:
                return True
            time.sleep(1)
    raise RuntimeError(f"no Ray job server at {address} after {timeout_s} s")


def submit(address: str, env: dict[str, str], job_id: str, job: str, *args: str) -> None:
    """`ray job submit --no-wait --working-dir . -- python -m echoseek.jobs.<job> ...`.

    Retried while the head's job agent is still starting (the job server answers before it)."""
    cmd = [
        str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
        "--submission-id", job_id, "--no-wait",
        "--", "python", "-m", f"echoseek.jobs.{job}", *args,
    ]  # fmt: skip
    for _ in range(30):
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        out = done.stdout + done.stderr
        if "No available agent to submit job" not in out:
            assert done.returncode == 0, out[-3000:]
            return
        time.sleep(3)
    raise AssertionError(f"{job}: the head never took the job")


def finished(address: str, env: dict[str, str], job_ids: list[str]) -> dict[str, str]:
    """Wait for every job (the job server's REST API, the token as a bearer header); each
    job's status and logs."""

    def get(path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{address}{path}", headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return dict(json.loads(answer.read()))

    deadline, status = time.monotonic() + 1500, {}
    while time.monotonic() < deadline:
        status = {j: str(get(f"/api/jobs/{j}")["status"]) for j in job_ids}
        if all(s in ("SUCCEEDED", "FAILED", "STOPPED") for s in status.values()):
            return {j: f"{status[j]}\n{get(f'/api/jobs/{j}/logs')['logs']}" for j in job_ids}
        time.sleep(5)
    raise AssertionError(f"jobs still running after 1500 s: {status}")


def test_submitted_jobs_run_as_main_on_a_token_auth_cluster(
    head: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """A chained sweep (Optuna's draw; a Tune trial that pretrains, then fine-tunes its encoder
    with FastAP on SOART3 gamma, p = 2, ranking the held-out rows by that distance), submitted
    as the README says. One job: several CPU-bound jobs side by side cost minutes on 2 cores."""
    from mlflow.tracking import MlflowClient

    address, env = head
    (tmp_path / "val").mkdir()
    val = ingested_stack(tmp_path / "val", random_stack(16, 16, 24, seed=1), 24, shard_size=12)
    data = ingested_stack(tmp_path, random_stack(16, 16, 48), labelled=48, shard_size=12)
    stage = {
        "epochs": 1,
        "batch_size": 8,
        "augment.size": 16,
        "scale.num_workers": 1,  # the config classes must resolve on any Train worker
        "scale.cpus_per_worker": 0.5,
        "scale.data_cpus": 0.25,
        "scale.use_gpu": False,
    }
    pre = {**stage, "optim.warmup_epochs": 0}
    fine = {**stage, "loss.m": 4, "head.dim": 8, "loss.distance": "soart3_gamma",
            "loss.distance_params.p": 2, "val_distance": "loss"}  # fmt: skip
    sweep = {
        "name": "submitted",
        "job": "pretrain+finetune",
        "input": str(data),
        "output": str(tmp_path / "sweep"),
        "fixed": {
            **{f"pretrain.{k}": v for k, v in pre.items()},
            **{f"finetune.{k}": v for k, v in fine.items()},
            "finetune.val": str(val),
        },
        "space": {"pretrain.augment.crop_scale_min": {"uniform": [0.4, 0.6]}},
        "search": "optuna",  # TPE draws the one trial's value
        "num_samples": 1,
        "scheduler": {"kind": "fifo"},
        "storage_path": str(tmp_path / "ray-tune"),
        "tracking_uri": f"sqlite:///{tmp_path / 'tune.db'}",
    }
    config = tmp_path / "chain.yaml"
    config.write_text(yaml.safe_dump(sweep))
    submit(address, env, "es-tune", "tune", str(config))
    logs = finished(address, env, ["es-tune"])
    for job_id, out in logs.items():
        assert out.startswith("SUCCEEDED") and "NameError" not in out, f"{job_id}: {out[-3000:]}"

    (row,) = pq.read_table(tmp_path / "sweep" / "results.parquet").to_pylist()
    assert row["status"] == "finished" and row["epochs"] == 1, row
    models = tmp_path / "ray-tune" / "submitted-models"
    encoder, model = models / f"{row['trial_id']}-pretrain", models / row["trial_id"]
    _, model_meta = load_model(model)
    assert model_meta.extra["pretrained"] == str(encoder) and (encoder / "model.json").is_file()
    assert model_meta.distance == "soart3_gamma"
    assert model_meta.extra["val_distance"] == "soart3_gamma"
    assert model_meta.extra["val_distance_params"] == {"p": 2}
    best = load_config(FinetuneConfig, tmp_path / "sweep" / "best.yaml")
    again = load_config(PretrainConfig, tmp_path / "sweep" / "best_pretrain.yaml")
    drawn = float(row["param.pretrain.augment.crop_scale_min"])  # stored as text
    assert 0.4 <= drawn <= 0.6 and again.augment.crop_scale_min == drawn
    assert best.pretrained == again.output

    client = MlflowClient(f"sqlite:///{tmp_path / 'tune.db'}")
    exp = client.get_experiment_by_name("echoseek")
    (parent,) = client.search_runs([exp.experiment_id], "tags.job = 'tune'")
    children = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    names = {c.info.run_name: c.data.tags["job"] for c in children}
    trial = f"submitted-{row['trial_id']}"
    assert names == {f"{trial}-pretrain": "pretrain", trial: "finetune"}
