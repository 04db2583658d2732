"""MLflow helpers against a real local sqlite store (and a real closed port for failures)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from echoseek.errors import InputError
from echoseek.tracking import (
    RunLogger,
    artifact_root,
    flat_params,
    git_commit,
    tracking_uri,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


@pytest.fixture
def fast_http_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri() == "http://mlflow:5000"
    assert tracking_uri("sqlite:////x.db") == "sqlite:////x.db"
    assert artifact_root("sqlite:////srv/mlflow/mlflow.db") == "file:///srv/mlflow/artifacts"
    assert artifact_root("http://mlflow:5000") is None


def test_flat_params_and_git_commit(tmp_path: Path) -> None:
    flat = flat_params({"train": {"lr": 0.05, "epochs": 3}, "name": "x", "long": "y" * 9000})
    assert flat["train.lr"] == "0.05" and flat["train.epochs"] == "3" and flat["name"] == "x"
    assert len(flat["long"]) == 6000
    # a sweep's comma key: MLflow refuses commas in keys (one bad key fails the whole batch)
    assert flat_params({"space": {"a,b": {"grid": [1]}}}) == {"space.a b.grid": "[1]"}
    here = git_commit(Path(__file__).parent)
    assert len(here) == 40 and all(c in "0123456789abcdef" for c in here)
    assert git_commit(tmp_path) == ""


def test_run_round_trip_and_reopen(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = RunLogger(store, experiment="exp")
    run_id = log.start("pretrain-a", {"train": {"lr": 0.1}}, {"git_commit": "abc"})
    log.log_metrics({"loss": 1.5, "nan": float("nan"), "label": "x"}, step=0)  # type: ignore[dict-item]
    log.log_metrics({"loss": 1.0, "val_p@10": 0.5}, step=1)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    log.log_artifacts(tmp_path / "model", "model")
    log.log_history_plot("loss")
    log.end()

    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.data.params == {"train.lr": "0.1"}
    assert run.data.tags["git_commit"] == "abc"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.5), (1, 1.0)]
    assert "nan" not in run.data.metrics  # non-finite and non-numeric values are skipped
    assert run.data.metrics["val_p_at_10"] == 0.5  # "@" is not allowed in MLflow names
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/model.json"]
    assert {"loss_curve.png", "config.json"} <= {a.path for a in client.list_artifacts(run_id)}
    config = client.download_artifacts(run_id, "config.json", str(tmp_path))
    assert json.loads(Path(config).read_text()) == {"train": {"lr": 0.1}}
    assert (tmp_path / "artifacts").is_dir()  # artifacts beside the local store

    again = RunLogger(store, experiment="exp")
    assert again.start("pretrain-a", {"train": {"lr": 0.1}}, {}) == run_id  # resumed run
    assert client.get_run(run_id).info.status == "RUNNING"
    assert RunLogger(store, experiment="exp").start("other", {}, {}) != run_id


@pytest.mark.usefixtures("fast_http_failures")
def test_unreachable_store_is_a_clear_error_at_start() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(InputError, match=f"MLflow tracking store {url} is not reachable"):
        RunLogger(url).start("r", {}, {})


@pytest.mark.usefixtures("fast_http_failures")
def test_failures_mid_run_warn_and_never_raise(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    log = RunLogger(f"sqlite:///{tmp_path / 'mlflow.db'}", retries=1, backoff_s=0.0)
    log.start("r", {}, {})
    log.client = MlflowClient(f"http://127.0.0.1:{closed_port()}")  # the server goes away
    with pytest.warns(RuntimeWarning, match="log_batch failed 2 times, skipped"):
        log.log_metrics({"loss": 1.0}, step=0)
    with pytest.warns(RuntimeWarning, match="failed 2 times"):
        log.end()


def test_log_series_logs_each_step_in_batches(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = RunLogger(store, experiment="exp")
    run_id = log.start("steps", {}, {})
    values = [float(i) / 10 for i in range(1203)]  # more than one 1000-metric batch
    values[5] = float("nan")
    log.log_series("step_loss", 40, values)
    log.end()
    history = MlflowClient(store).get_metric_history(run_id, "step_loss")
    got = sorted((m.step, m.value) for m in history)
    assert len(got) == 1202 and (45, values[5]) not in got  # the NaN step is skipped
    assert got[0] == (40, 0.0) and got[-1] == (40 + 1202, 120.2)


def test_a_new_local_store_is_seeded_with_mlflows_own_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from mlflow.tracking import MlflowClient

    from echoseek.tracking import seed_sqlite_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    MlflowClient(f"sqlite:///{tmp_path / 'own.db'}").search_experiments()  # MLflow's own

    def schema(path: Path) -> list[Any]:
        """Tables, indexes and migration version (a table's constraint order varies between
        processes, so each statement's lines are compared as a sorted list)."""
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
            version = db.execute("SELECT version_num FROM alembic_version").fetchall()
        lines = [
            (name, sorted((sql or "").replace(", \n", "\n").splitlines())) for name, sql in rows
        ]
        return [*lines, *version]

    seeded = tmp_path / "store" / "mlflow.db"
    capfd.readouterr()
    seed_sqlite_store(seeded)  # the first on this "machine": it makes the cached empty store
    assert (tmp_path / "cache" / "echoseek").is_dir()
    assert "INFO" not in "".join(capfd.readouterr())  # MLflow's migration lines stay quiet
    assert schema(seeded) == schema(tmp_path / "own.db")
    with sqlite3.connect(seeded) as db:
        (location,) = db.execute("SELECT artifact_location FROM experiments").fetchone()
    assert location == str(tmp_path / "mlruns" / "0")  # where MLflow would have put it
    client = MlflowClient(f"sqlite:///{seeded}")
    exp = client.create_experiment("echoseek")
    client.create_run(exp)
    before = seeded.read_bytes()
    seed_sqlite_store(seeded)  # an existing store is never replaced
    assert seeded.read_bytes() == before and len(client.search_runs([exp])) == 1


def test_a_run_logger_on_a_new_local_store_is_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """MLflow opens (and would migrate, printing INFO lines) a store when its client is made:
    a job's logger on a new local store seeds it first, on a fresh cache and a warm one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    capfd.readouterr()
    for name in ("first", "second"):
        store = tmp_path / name / "mlflow.db"
        log = RunLogger(f"sqlite:///{store}", experiment="quiet")
        assert store.is_file()
        log.start("run", {"lr": 0.1}, {})
        log.end()
    assert "INFO" not in "".join(capfd.readouterr())
