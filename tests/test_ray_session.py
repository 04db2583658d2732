"""How a job starts Ray (echoseek.ray_session.ensure_ray), in a fresh process each time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
STALE = "192.0.2.2:36845"  # TEST-NET-2: no Ray cluster answers there


def test_without_ray_address_a_job_starts_its_own_instance_despite_a_stale_bootstrap_file() -> None:
    """Ray on its own joins the cluster named in ``<tmp>/ray/ray_current_cluster`` (the last
    ``ray start`` on the machine, or one killed before it cleaned up). A job without
    ``RAY_ADDRESS`` starts a local instance instead of failing on it."""
    temp = tempfile.mkdtemp(prefix="es-")  # short: Ray's socket paths have a length limit
    try:
        (Path(temp) / "ray").mkdir()
        (Path(temp) / "ray" / "ray_current_cluster").write_text(STALE)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = temp  # where Ray looks for that file, and puts its own session
        code = (
            "from echoseek.ray_session import ensure_ray\n"
            "ray = ensure_ray(1)\n"
            "print(ray.get_runtime_context().gcs_address)\n"
            "print(ray.cluster_resources()['CPU'])\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        address, cpus = done.stdout.split()[-2:]
        assert address != STALE and float(cpus) == 1.0
    finally:
        shutil.rmtree(temp, ignore_errors=True)
