"""`echoseek tune` on a real local Ray cluster: Tune trials that are TorchTrainers, nested MLflow
runs, a worker crash retried from its checkpoint, a failing trial that does not stop the sweep,
results, best.yaml, registry, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from echoseek.cli import main as cli
from echoseek.config import load_config
from echoseek.models import ModelMeta, build_model, save_model
from echoseek.training.finetune import REPORTED as FINETUNE_REPORTED
from echoseek.training.finetune import FinetuneConfig
from tests.datasets import ingested_stack, random_stack

pytestmark = pytest.mark.slow

META = ModelMeta(backbone="resnet18", small_stem=True, head_dim=None, head_hidden=None,
                 input_size=(16, 16), mean=(0.5,), std=(0.5,))  # fmt: skip


def sweep_file(tmp: Path) -> Path:
    frames = random_stack(20, 20, 48)
    frames[:, :, 1::2] //= 3  # class 1 is darker: something to learn
    dataset = ingested_stack(tmp, frames, labelled=48, shard_size=12)
    for seed, name in enumerate(("enc_a", "enc_b")):
        torch.manual_seed(seed)
        model = build_model(META)
        if name == "enc_b":  # blind: every image gets the same features, so ASHA stops it
            for param in model.parameters():
                torch.nn.init.zeros_(param)
        save_model(model, tmp / name, META)
    config = {
        "name": "t",
        "job": "finetune",
        "input": str(dataset),
        "output": str(tmp / "sweep"),
        "fixed": {
            "val_fraction": 0.25,
            "epochs": 2,
            "batch_size": 8,
            "head.dim": 16,
            "head.hidden": 32,
            "head.trainable": "head",  # frozen encoders: enc_b stays blind
            "scale.num_workers": 1,
            "scale.cpus_per_worker": 0.5,
            "scale.data_cpus": 0.25,
        },
        # a seeing encoder, a blind one (run second: ASHA compares it with the first at epoch
        # 1 and stops it) and one that does not exist: that trial fails at run time
        "space": {
            "pretrained": {"grid": [str(tmp / "enc_a"), str(tmp / "enc_b"), str(tmp / "none")]},
            "loss.distance": {"grid": ["cosine"]},
        },
        "search": "grid",
        "num_samples": 1,
        "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        "storage_path": str(tmp / "ray"),
        "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
        "register": "swept",
    }
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_sweep_runs_trials_records_them_and_resumes(
    ray_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    from echoseek.sweep import SweepConfig, run_sweep
    from tests.faults import FailOnce

    config = sweep_file(tmp_path)
    crash = tmp_path / "crashed-once"  # the first trial's worker dies at the start of epoch 1
    summary = run_sweep(load_config(SweepConfig, config), hooks=[FailOnce(crash, epoch=1)])
    assert crash.exists() and summary["failed"] == 1 and summary["trials"] == 3
    out = capsys.readouterr().out
    assert "epoch 1/2  val_map" in out and "best" in out and "failed:" in out
    # echoseek's lines only: none of Tune's own reporter (header box, results path, tables)
    assert not any(s in out for s in ("View detailed results", "Configuration for", "╭")), out

    table = pq.read_table(tmp_path / "sweep" / "results.parquet").to_pylist()
    assert len(table) == 3
    failed = [r for r in table if r["status"] == "failed"]
    assert [r["param.pretrained"] for r in failed] == [str(tmp_path / "none")]
    assert "not found" in failed[0]["error"]
    ran = [r for r in table if r["status"] != "failed"]
    assert {r["status"] for r in ran} <= {"finished", "stopped"}
    # the crashed trial went on from its epoch-0 checkpoint: no trial reported an epoch twice
    assert all(len(r["history"]) == r["epochs"] <= 2 for r in ran)
    assert any(r["status"] == "finished" and r["epochs"] == 2 for r in ran)
    # ASHA stopped the worst trial at its first rung (epoch 1 of 2), and said so
    stopped = [r for r in ran if r["status"] == "stopped"]
    assert [(r["param.pretrained"], r["epochs"]) for r in stopped] == [(str(tmp_path / "enc_b"), 1)]
    assert stopped[0]["best"] < min(r["best"] for r in ran if r["status"] == "finished")
    assert f"trial {stopped[0]['trial_id']}  stopped early after epoch 1" in out
    assert all(0.0 <= r["best"] <= 1.0 and r["rankme"] for r in ran)

    # every metric a sweep may name (metric=) is really reported by a trial's epochs
    done = next(r["trial_id"] for r in ran if r["status"] == "finished")
    first = json.loads((tmp_path / "ray" / "t" / done / "result.json").read_text().splitlines()[0])
    assert set(FINETUNE_REPORTED) <= set(first), set(FINETUNE_REPORTED) - set(first)

    best = load_config(FinetuneConfig, tmp_path / "sweep" / "best.yaml")
    top = max((r for r in ran if r["status"] == "finished"), key=lambda r: r["best"])
    assert best.pretrained == top["param.pretrained"] and best.loss.distance == "cosine"
    assert best.epochs == 2 and best.run.name == ""
    for name in ("metric_vs_pretrained", "metric_vs_loss_distance", "heatmap", "trial_curves"):
        assert (tmp_path / "sweep" / f"{name}.png").stat().st_size > 1000, name
    assert (tmp_path / "sweep" / "rankme_vs_metric.png").is_file()

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("echoseek")
    parents = client.search_runs([exp.experiment_id], "tags.job = 'tune'")
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    by_id = {c.info.run_name.removeprefix("t-"): c for c in children}
    assert len(children) == 3
    winner = by_id[parent.data.tags["best_trial"]]
    assert winner.info.run_id == parent.data.tags["best_run_id"]
    assert winner.data.params["override.pretrained"] == top["param.pretrained"]
    assert {by_id[r["trial_id"]].info.status for r in failed} == {"FAILED"}
    assert {by_id[r["trial_id"]].info.status for r in stopped} == {"KILLED"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")} >= {
        "sweep/results.parquet",
        "sweep/best.yaml",
        "sweep/heatmap.png",
    }
    version = client.get_model_version_by_alias("swept", "candidate")
    assert version.run_id == winner.info.run_id

    # the same name again: restored, nothing that finished runs again
    assert cli(["tune", str(config)]) == 0
    again = capsys.readouterr().out
    finished_ids = [r["trial_id"] for r in table if r["status"] == "finished"]
    assert not any(f"trial {t}  epoch" in again for t in finished_ids), again
    rerun = pq.read_table(tmp_path / "sweep" / "results.parquet").to_pylist()
    assert sorted(r["trial_id"] for r in rerun) == sorted(r["trial_id"] for r in table)
    finished = {r["trial_id"]: r["seconds"] for r in table if r["status"] == "finished"}
    assert {r["trial_id"]: r["seconds"] for r in rerun if r["trial_id"] in finished} == finished
    assert len(client.search_runs([exp.experiment_id], "tags.job = 'tune'")) == 1


def test_concurrency_counts_each_trials_driver_workers_and_read(ray_session: Any) -> None:
    from echoseek.sweep.config import SweepConfig
    from echoseek.sweep.tuner import concurrency

    scale = {"num_workers": 1, "cpus_per_worker": 0.5, "data_cpus": 0.25, "use_gpu": False}
    assert concurrency(SweepConfig(), scale) == 1  # 0.25 + 0.5 + 1 (the read's listing) of 2
    lean = {**scale, "cpus_per_worker": 0.0, "data_cpus": 0.0}
    assert concurrency(SweepConfig(trial_cpus=1e-3), lean) == 1  # the read's CPU, 2 x 1.001 > 2
    assert concurrency(SweepConfig(max_concurrent_trials=3), scale) == 3
