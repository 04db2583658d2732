"""Shared fixtures. Ray is started once per test session (2 CPUs, no dashboard)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["tests.index_fixtures"]  # the shared synthetic corpus and index

# Quiet, fast local Ray (shared/DESIGN.md, "Ray notes"). Set before Ray is imported anywhere.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """A local Ray cluster shared by every test that asks for it."""
    import ray

    from echoseek.ray_session import local_system_config

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _system_config=local_system_config(),
        )
    yield ray
    ray.shutdown()
