"""Shared fixtures. Ray is started once per test session (2 CPUs, no dashboard)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# the shared synthetic corpus and index; the S3-compatible server of the object-store tests
pytest_plugins = ["tests.index_fixtures", "tests.object_store_server"]

# Quiet, fast local Ray. Set before Ray is imported anywhere.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Train's controller polls its workers every 2 s by default: a finished or crashed worker group
# is noticed up to 2 s late, several times per training test
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """A local Ray cluster shared by every test that asks for it, with Serve's own proxy as the
    HTTP ingress. Under the HAProxy ingress (the service's default), the dozens of Serve starts
    and stops of one long Ray session went wrong in the full suite: a later start found the
    HAProxy manager actor killed under it, or port 8000 still held by the last HAProxy. A
    service starts Serve once per Ray, so the HAProxy ingress is tested end to end in its own
    process (``tests/service/test_ingress.py``) and measured by ``bench/bench_service.py``."""
    import ray

    from echoseek.ray_session import local_system_config, local_worker_env
    from echoseek.service.ingress import prepare_ingress

    if not ray.is_initialized():
        prepare_ingress("proxy", joining=False)
        ray.init(
            address="local",  # never a cluster another test started (their bootstrap file)
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": local_worker_env()},
            _system_config=local_system_config(),
        )
    yield ray
    ray.shutdown()


def selected(request: pytest.FixtureRequest, path: str) -> bool:
    """Whether any test of the file ``path`` is in this session."""
    return any(item.nodeid.startswith(path) for item in request.session.items)


@pytest.fixture(scope="session", autouse=True)
def submitted_sweep(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The job of tests/jobs/test_submit.py, submitted to its own Ray head when the session
    starts (None when that test is not selected).

    Most of its minutes are worker processes starting on the second head; submitted first,
    they overlap the other tests instead of adding to the suite's time.
    """
    if not selected(request, "tests/jobs/test_submit.py"):
        yield None
        return
    from tests.cluster_job import submitted_chain

    with submitted_chain(tmp_path_factory.mktemp("submitted")) as submitted:
        yield submitted


def script_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, test: str, module: str
) -> Iterator[Any]:
    """``(process, output dir)`` of ``python -m module`` started when the session starts (its
    cluster's nodes start up meanwhile), for the test file ``test`` (None when unselected)."""
    if not selected(request, test):
        yield None
        return
    from tests.script_process import started

    out = tmp_path_factory.mktemp(module.rsplit(".", 1)[-1])
    with started(module, out) as proc:
        yield proc, out


def script_fixture(test: str, module: str) -> Any:
    """A session fixture (autouse) yielding :func:`script_run` of ``module`` for ``test``."""

    @pytest.fixture(scope="session", autouse=True)
    def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
        yield from script_run(request, tmp_path_factory, test, module)

    return run


# pretraining that loses a node; the service and an index build on simulated clusters
two_node_run = script_fixture("tests/jobs/test_two_node_resume.py", "tests.two_node_resume")
cluster_serve_run = script_fixture("tests/service/test_cluster_serve.py", "tests.cluster_serve")
cluster_build_run = script_fixture("tests/index/test_cluster_build.py", "tests.cluster_build")
