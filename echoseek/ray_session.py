"""Start or join Ray the same way in every job.

A job joins an initialised Ray as is, a cluster when ``RAY_ADDRESS`` names one (``ray job
submit`` sets it), and otherwise starts a local instance on this machine: no dashboard, no
usage stats, driver logging at WARNING so job output stays readable, and every worker process
runs :func:`quiet_worker` at start. Token authentication stays as Ray configures it (on by
default for local clusters). ``ray.init`` replaces the driver's SIGTERM handler with
``sys.exit``; a handler the caller installed (the CLI's, which unwinds like Ctrl-C) is kept.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from typing import Any


def ensure_ray(num_cpus: int | None = None) -> Any:
    """Return the ``ray`` module with a session initialised (see the module docstring)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return ray
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env={"worker_process_setup_hook": "echoseek.ray_session.quiet_worker"},
        )
    if callable(sigterm):
        signal.signal(signal.SIGTERM, sigterm)
    quiet_ray_data()
    return ray


def quiet_ray_data() -> None:
    """No per-dataset INFO lines or progress bars from Ray Data: pipelines also run inside
    Ray Train workers, whose bars would interleave in the driver's output."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    DataContext.get_current().enable_progress_bars = False


def quiet_worker() -> None:
    """Worker-process setup of a local instance: Ray Data and Train at WARNING (no lines per
    dataset execution or per report from inside Train workers), and no warning every
    second from Ray Train's placement-group cleaner, whose liveness probe uses the state API
    that a local instance without a dashboard does not serve. The cleaner only matters when
    the Train controller dies while the driver lives on; a local instance ends with it."""
    quiet_ray_data()  # imports ray.data, which configures its loggers on import
    # Ray Train's own dataset manager sets this option; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*ExecutionOptions\.exclude_resources")
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    cleaner = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
    logging.getLogger(cleaner).setLevel(logging.ERROR)
