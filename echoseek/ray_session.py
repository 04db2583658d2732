"""Start or join Ray the same way in every job.

A job joins an initialised Ray as is, a cluster when ``RAY_ADDRESS`` names one (``ray job
submit`` sets it), and otherwise starts a local instance on this machine: no dashboard, no
usage stats, driver logging at WARNING so job output stays readable. Token authentication
stays as Ray configures it (on by default for local clusters).
"""

from __future__ import annotations

import logging
import os
from typing import Any


def ensure_ray(num_cpus: int | None = None) -> Any:
    """Return the ``ray`` module with a session initialised (see the module docstring)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return ray
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    quiet_ray_data()
    return ray


def quiet_ray_data() -> None:
    """No per-dataset INFO lines or progress bars from Ray Data: pipelines also run inside
    Ray Train workers, whose bars would interleave in the driver's output."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    DataContext.get_current().enable_progress_bars = False
