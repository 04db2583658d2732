"""Test-only helpers for staging litter: dead pids, litter listings, runs killed mid-write."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from echoseek.storage import parse_litter

REPO = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def litter(parent: Path) -> list[Path]:
    """The staging and trash directories (of any owner) in ``parent``."""
    return [p for p in parent.iterdir() if parse_litter(p.name) is not None]


def run_until_marker(script: str, marker: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``script`` in a subprocess; return once it has written ``marker``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(marker), *args], env=env)
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"subprocess ended (rc {proc.returncode}) before writing {marker}")
        time.sleep(0.1)
    return proc
