"""Start or join Ray the same way in every job.

A job joins an initialised Ray as is, a cluster when ``RAY_ADDRESS`` names one (``ray job
submit`` sets it), and otherwise starts a local instance on this machine (``address="local"``:
never the cluster of the last ``ray start`` here, which Ray would otherwise join on its own,
even when that cluster is gone and only its bootstrap file is left): no dashboard, no usage
stats, and every worker process runs :func:`quiet_worker` at start. By default (no ``-v``)
nothing of Ray's own reaches the terminal: worker, controller and GCS output is not forwarded to
the driver and Ray's driver logging is at ERROR; it all stays in Ray's session logs. echoseek's
own lines from remote processes travel by queue (:class:`echoseek.training.printer.EpochPrinter`).
Token authentication stays as Ray configures it (on by default for local clusters). ``ray.init``
replaces the driver's SIGTERM handler with ``sys.exit``; a handler the caller installed (the
CLI's, which unwinds like Ctrl-C) is kept.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from typing import Any

VERBOSE_ENV = "ECHOSEEK_VERBOSE"


def set_verbosity(verbose: bool) -> None:
    """``-v``: Ray's and MLflow's own lines on the terminal too. By default a user sees
    echoseek's lines only; Ray's stay in its session logs (``/tmp/ray/session_latest/logs``)."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # model downloads


def is_verbose() -> bool:
    """Whether ``-v`` was given (or ``ECHOSEEK_VERBOSE`` is set)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def local_system_config() -> dict[str, Any]:
    """Raylet settings for a local instance. A training job starts ~8 processes at once
    (workers, controller, Ray Data tasks at fractional CPUs); the raylet warns at 4x the
    startup concurrency, which defaults to the CPUs. Idle workers beyond the CPU count are
    kept for a minute instead of one second, so the next Ray Data stage or Train run of the
    same driver reuses them instead of paying a new process and its imports (a second 2-epoch
    pretrain in one session: 107 s -> 54 s on 2 cores)."""
    cpus = os.cpu_count() or 1
    return {
        "worker_maximum_startup_concurrency": max(4, cpus),
        "num_workers_soft_limit": 4 * cpus,
        "idle_worker_killing_time_threshold_ms": 60_000,
    }


def local_worker_env() -> dict[str, str]:
    """Environment of a local instance's workers: OpenMP threads that sleep when idle
    (``OMP_WAIT_POLICY=PASSIVE``, unless set). A Train worker's intra-op threads share the
    cores with Ray Data's decode tasks; spinning threads then wait on each other: the batched
    two-view augmentation at 224 px ran at 124 img/s with 2 threads in a Train worker and
    268 with passive waiting on 2 cores (BENCHMARKS.md, "Feeding the device")."""
    return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def ensure_ray(num_cpus: int | None = None) -> Any:
    """Return the ``ray`` module with a session initialised (see the module docstring)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return ray
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    verbose = is_verbose()
    # quiet: no worker, controller or GCS output forwarded; Ray's driver lines only on errors
    options: dict[str, Any] = {
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "log_to_driver": verbose,
    }
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**options)
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            runtime_env={
                "worker_process_setup_hook": "echoseek.ray_session.quiet_worker",
                "env_vars": local_worker_env(),
            },
            _system_config=local_system_config(),
            **options,
        )
    if callable(sigterm):
        signal.signal(signal.SIGTERM, sigterm)
    quiet_ray_data()
    return ray


def quiet_ray_data() -> None:
    """No per-dataset INFO lines or progress bars from Ray Data: pipelines also run inside
    Ray Train workers, whose bars would interleave in the driver's output."""
    from ray.data import DataContext

    # ERROR when quiet: Ray Data warns "Progress bars disabled" once per process otherwise
    logging.getLogger("ray.data").setLevel(logging.WARNING if is_verbose() else logging.ERROR)
    DataContext.get_current().enable_progress_bars = False


def quiet_serve() -> None:
    """No Serve INFO lines (started, connecting, ready, which HAProxy binary) on the terminal
    unless ``-v``."""
    import ray.serve  # noqa: F401  (Serve sets its logger up on import: quiet it after)

    if not is_verbose():
        logging.getLogger("ray.serve").setLevel(logging.WARNING)


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


def cluster_has_gpus() -> bool:
    """True when the connected Ray cluster advertises GPUs."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) > 0


def cluster_cpus() -> float:
    """The CPUs of the Ray cluster this process is connected to."""
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))
