"""Test scripts that run in their own process and process group (each starts its own Ray
cluster), started when the test session starts so that their node start-ups overlap other
tests (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def started(module: str, out: Path) -> Iterator[subprocess.Popen[str]]:
    """``python -m module out`` in its own process group (stdout and stderr to files in
    ``out``), killed with every process of its cluster when the caller leaves."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with open(out / "stdout", "w") as stdout, open(out / "stderr", "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(out)],
            cwd=ROOT, env=env, stdout=stdout, stderr=stderr, text=True, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)


def finished(
    run: tuple[subprocess.Popen[str], Path] | None, timeout_s: float
) -> tuple[dict[str, Any], Path]:
    """The JSON line a script run printed last, once it exited 0 (its stderr's tail if not),
    and its output dir."""
    assert run is not None  # tests/conftest.py starts it for the test that asks
    proc, out = run
    returncode = proc.wait(timeout=timeout_s)
    assert returncode == 0, (out / "stderr").read_text()[-3000:]
    return dict(json.loads((out / "stdout").read_text().strip().splitlines()[-1])), out


def remove_when_marked(cluster: Any, nodes: list[Any], marker: Path, removed: list[str]) -> None:
    """Remove the node of ``nodes`` whose id a fault hook writes to ``marker`` (within 300 s),
    and note its id in ``removed`` (a watcher thread of a simulated-cluster script)."""
    deadline = time.monotonic() + 300
    while not marker.exists() or not marker.read_text():
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    node_id = marker.read_text().strip()
    node = next(n for n in nodes if n.node_id == node_id)  # a worker: it ran the hooked work
    cluster.remove_node(node)
    removed.append(node_id)
