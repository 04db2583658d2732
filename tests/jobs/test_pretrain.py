"""`echoseek pretrain` on a real local Ray cluster: 2 CPU workers (gloo), MLflow, recovery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from echoseek.cli import main as cli
from echoseek.jobs import pretrain
from echoseek.models import load_model
from echoseek.training.pretrain import pretrain as pretrain_fn
from tests.datasets import ingested_stack, random_stack

pytestmark = pytest.mark.slow


def pretrain_dataset(tmp: Path) -> Path:
    """A small labelled stack, with a held-out one beside it for val_map (see config)."""
    (tmp / "val").mkdir()
    ingested_stack(tmp / "val", random_stack(20, 20, 24, seed=1), labelled=24, shard_size=12)
    return ingested_stack(tmp, random_stack(20, 20, 48), labelled=48, shard_size=12)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrain_dataset(tmp_path_factory.mktemp("pretrain"))


def config(dataset: Path, tmp: Path, **overrides: Any) -> list[str]:
    values = {
        "input": dataset,
        "val": dataset.parent / "val" / "ds",
        "output": tmp / "model",
        "epochs": 2,
        "batch_size": 8,
        "probe_size": 16,
        "augment.size": 16,
        "model.small_stem": "true",
        "scale.num_workers": 2,
        "scale.cpus_per_worker": 0.5,
        "scale.data_cpus": 0.25,
        "run.name": "t",
        "run.storage_path": tmp / "ray",
        "run.tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
        **overrides,
    }
    return [f"{k}={v}" for k, v in values.items()]


def mlflow_run(tmp: Path, run_id: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    return client, client.get_run(run_id)


def test_two_workers_survive_a_crash_export_track_and_resume(
    ray_session: Any, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from echoseek.config import load_config
    from tests.faults import FailOnce

    marker = tmp_path / "ray" / "t" / "echoseek-injected-failure"  # rank 1 dies at epoch 1
    overrides = {"run.register": "enc", "normal_labels": "[0]"}  # val_auroc: label 1 anomalous
    cfg = load_config(pretrain.Config, None, config(dataset, tmp_path, **overrides))
    out = pretrain_fn(cfg, hooks=[FailOnce(marker, epoch=1)])
    assert marker.exists()  # the failure really happened, and the run still finished
    assert out["epochs"] == 2 and np.isfinite(out["loss"])
    model, meta = load_model(tmp_path / "model")
    assert meta.extra["method"] == "simsiam" and meta.input_size == (16, 16)
    checkpoints = sorted(p.name for p in (tmp_path / "ray" / "t").glob("epoch-*"))
    assert checkpoints == ["epoch-00000", "epoch-00001"]

    client, run = mlflow_run(tmp_path, out["run_id"])
    assert run.data.params["batch_size"] == "8" and run.data.params["optim.base_lr"] == "0.05"
    assert (
        run.data.tags["dataset_sha256"]
        == json.loads((dataset / "dataset.json").read_text())["sha256"]
    )
    # the restarted workers went on from the epoch-0 checkpoint: no epoch or step twice
    assert [m.step for m in client.get_metric_history(out["run_id"], "loss")] == [0, 1]
    steps = client.get_metric_history(out["run_id"], "step_loss")  # per-step, global steps
    per_epoch = len(steps) // 2
    assert per_epoch >= 1 and sorted(m.step for m in steps) == list(range(2 * per_epoch))
    step_lr = client.get_metric_history(out["run_id"], "step_lr")
    assert len(step_lr) == len(steps) and all(m.value > 0 for m in step_lr)
    assert {"rankme", "collapse_std", "val_map", "data_wait_fraction"} <= set(run.data.metrics)
    assert 0.0 <= run.data.metrics["val_auroc"] <= 1.0
    # time to first step: the first attempt's epoch 0, then the restart's own (a later step)
    first = [m.value for m in client.get_metric_history(out["run_id"], "first_step_s")]
    assert len(first) == 2 and 0 < first[0] < first[1] < out["seconds"]
    assert out["first_step_s"] == pytest.approx(first[-1])
    worker = [m.value for m in client.get_metric_history(out["run_id"], "worker_start_s")]
    batch = [m.value for m in client.get_metric_history(out["run_id"], "first_batch_s")]
    assert all(0 < w < b <= f for w, b, f in zip(worker, batch, first, strict=True))
    assert out["images_per_s"] > 0 and 0 <= out["data_wait_fraction"] <= 1
    names = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"model", "loss_curve.png", "config.json"} <= names
    assert out["registered"] == "models:/enc/1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    registered, _ = load_model("models:/enc/1")
    for key, value in model.state_dict().items():
        assert np.array_equal(registered.state_dict()[key].numpy(), value.numpy()), key

    # re-running the same name with more epochs resumes after epoch 1 instead of restarting
    more = config(dataset, tmp_path, epochs=3, val="", overwrite="true", **{"scale.num_workers": 1})
    assert cli(["pretrain", *more]) == 0
    last = sorted((tmp_path / "ray" / "t").glob("epoch-*"))[-1]
    assert json.loads((last / "state.json").read_text())["epoch"] == 2
    resumed = client.get_metric_history(out["run_id"], "loss")  # the same MLflow run goes on
    assert [m.step for m in resumed] == [0, 1, 2]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"optim.base_lr": 0}, "optim.base_lr: must be > 0"),
        ({"epochs": 0}, "epochs >= 1"),
        ({"optim.warmup_epochs": 2}, "optim.warmup_epochs: 2.0 must be less than epochs (2)"),
        ({"method": "nope"}, "method: unknown 'nope'"),
        ({"nonsense": 1}, "unknown config field 'nonsense'"),
        ({"batch_size": 64}, "workers gets only 24 rows"),
        ({"val": "", "normal_labels": "[0]"}, "normal_labels: val_auroc needs a labelled held-out"),
        (
            {"method": "instdisc", "model.method_options.num_data": 5},
            "model.method_options.num_data: 5, but",
        ),
    ],
)
def test_bad_configs_fail_before_any_worker(
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    override: dict[str, Any],
    message: str,
) -> None:
    assert cli(["pretrain", *config(dataset, tmp_path, **override)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ray").exists()


def test_missing_dataset_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["pretrain", f"input={tmp_path / 'nope'}"]) == 2
    assert "not a dataset directory" in capsys.readouterr().err


def test_instdisc_sizes_its_memory_bank_from_the_input(
    dataset: Path, tmp_path: Path, ray_session: object
) -> None:
    """InstDisc needs one memory-bank row per input row; the job sets it from the dataset (a
    worker used to fail on the missing ``num_data``)."""
    overrides = {"method": "instdisc", "epochs": 1, "optim.warmup_epochs": 0, "val": "",
                 "scale.num_workers": 1}  # fmt: skip
    assert cli(["pretrain", *config(dataset, tmp_path, **overrides)]) == 0
    _, meta = load_model(tmp_path / "model")
    assert meta.embedding_dim > 0
