"""The cluster entry point: `ray job submit --working-dir . -- python -m echoseek.jobs.<job>`.

A real local head (`ray start --head`, dashboard and job server on 127.0.0.1, token auth on),
and the pretrain and finetune jobs submitted to it exactly as the README says. Run as
``__main__``, a job's config classes and worker loop must still resolve on the Train workers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        f"--dashboard-port={dashboard}", f"--temp-dir={temp}", "--disable-usage-stats",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for(address, proc)
        yield address, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for(address: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            return
        except OSError as exc:  # 401 (token auth) also means the job server is up
            if getattr(exc, "code", None) == 401:
                return
            time.sleep(1)
    raise RuntimeError(f"no Ray job server at {address} after {timeout_s} s")


def submit(address: str, env: dict[str, str], job: str, *overrides: str) -> str:
    """`ray job submit --working-dir . -- python -m echoseek.jobs.<job> ...`; its output.

    Retried while the head's job agent is still starting (the job server answers before it)."""
    cmd = [
        str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
        "--", "python", "-m", f"echoseek.jobs.{job}", *overrides,
    ]  # fmt: skip
    for _ in range(30):
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        out = done.stdout + done.stderr
        if "No available agent to submit job" not in out:
            break
        time.sleep(3)
    return out


def test_submitted_jobs_run_as_main_on_a_token_auth_cluster(
    head: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    address, env = head
    (tmp_path / "val").mkdir()
    val = ingested_stack(tmp_path / "val", random_stack(16, 16, 24, seed=1), 24, shard_size=12)
    data = ingested_stack(tmp_path, random_stack(16, 16, 48), labelled=48, shard_size=12)
    common = [
        f"input={data}",
        "epochs=1",
        "batch_size=8",
        "augment.size=16",
        "scale.num_workers=1",  # the config classes must resolve on any Train worker
        "scale.cpus_per_worker=0.5",
        "scale.data_cpus=0.25",
        "scale.use_gpu=false",
        f"run.storage_path={tmp_path / 'ray'}",
        f"run.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    out = submit(
        address, env, "pretrain", *common, f"val={val}", "probe_size=16",
        "optim.warmup_epochs=0", f"output={tmp_path / 'ssl'}", "run.name=submitted-pretrain",
    )  # fmt: skip
    assert "succeeded" in out.lower() and "NameError" not in out, out[-3000:]
    assert (tmp_path / "ssl" / "model.json").is_file()
    out = submit(
        address, env, "finetune", *common, f"pretrained={tmp_path / 'ssl'}", "loss.m=4",
        "head.dim=8", f"output={tmp_path / 'model'}", "run.name=submitted-finetune",
    )  # fmt: skip
    assert "succeeded" in out.lower(), out[-3000:]
    assert (tmp_path / "model" / "model.json").is_file()
