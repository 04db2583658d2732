"""Test scripts that run in their own process and process group (each starts its own Ray
cluster), started when the test session starts so that their node start-ups overlap other
tests (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
