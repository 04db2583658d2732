"""A second, throwaway Ray head (`ray start --head`, token auth on), the team's `mlflow server`
on 127.0.0.1, and a job submitted to the head exactly as the README says: `ray job submit
--working-dir . --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": ...}}' -- python -m
echoseek.jobs.<job>`.

tests/jobs/test_submit.py checks the job; tests/conftest.py submits it when the session starts
(:func:`submitted_chain`), so its minutes of CPU-light waiting on worker start-ups overlap the
other tests instead of adding to them.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.datasets import ingested_stack, random_stack

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_head() -> Iterator[tuple[str, dict[str, str]]]:
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
            if _wait_for(f"{address}/api/version", proc):
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


def _wait_for(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> bool:
    """True once ``url`` answers (401 counts: a server behind token auth is up); False when
    ``proc``, the server's process, exited first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(url, timeout=2)
            return True
        except OSError as exc:
            if getattr(exc, "code", None) == 401:
                return True
            time.sleep(0.5)
    raise RuntimeError(f"nothing answered at {url} after {timeout_s} s")


@contextlib.contextmanager
def running_mlflow_server(root: Path) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` as mlflow/README.md starts it, on a free local port, its store and
    artifact root under ``root``; yields (its URL, its artifact root)."""
    port, artifacts = free_port(), root / "server-artifacts"
    cmd = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", str(artifacts),
    ]  # fmt: skip
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not _wait_for(f"{url}/health", proc):
            raise RuntimeError(
                f"mlflow server exited:\n{(root / 'server.log').read_text()[-2000:]}"
            )
        yield url, artifacts
    finally:  # a throwaway server, like the head: no graceful shutdown, nothing of it is kept
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def submit(
    address: str, env: dict[str, str], job_id: str, job: str, *args: str, tracking_uri: str
) -> None:
    """`ray job submit --no-wait --working-dir . --runtime-env-json ... -- python -m
    echoseek.jobs.<job> ...`, the job's environment carrying ``MLFLOW_TRACKING_URI``.

    Retried while the head's job agent is still starting (the job server answers before it)."""
    runtime_env = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": tracking_uri}})
    cmd = [
        str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
        "--submission-id", job_id, "--no-wait", "--runtime-env-json", runtime_env,
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


@dataclass
class Submitted:
    """A job submitted to its own head: where to ask for it and what it writes."""

    address: str
    env: dict[str, str]
    job_id: str
    tmp: Path
    tracking_uri: str  # the mlflow server the job logs to
    artifacts: Path  # that server's artifact root
    stop: Callable[[], None]


def submit_chain(
    address: str, env: dict[str, str], tmp_path: Path, tracking_uri: str
) -> tuple[str, Path]:
    """Submit the chained sweep of tests/jobs/test_submit.py, tracked on ``tracking_uri``;
    (its job id, its files' dir)."""
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
    }  # no tracking_uri: the job's $MLFLOW_TRACKING_URI
    config = tmp_path / "chain.yaml"
    config.write_text(yaml.safe_dump(sweep))
    submit(address, env, "es-tune", "tune", str(config), tracking_uri=tracking_uri)
    return "es-tune", tmp_path


@contextlib.contextmanager
def submitted_chain(tmp_path: Path) -> Iterator[Submitted]:
    """A head and an mlflow server, with the chained sweep submitted to the head and tracked on
    the server, until the caller stops them or leaves."""
    with contextlib.ExitStack() as stack:
        address, env = stack.enter_context(running_head())
        (tmp_path / "mlflow").mkdir()
        url, artifacts = stack.enter_context(running_mlflow_server(tmp_path / "mlflow"))
        job_id, tmp = submit_chain(address, env, tmp_path, url)
        yield Submitted(address, env, job_id, tmp, url, artifacts, stack.close)
