"""`echoseek demo` end to end on a short phantom: every stage runs and reports."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from echoseek.cli import main as cli
from echoseek.errors import ConfigError
from echoseek.index import open_index
from echoseek.jobs import demo

pytestmark = pytest.mark.slow


def test_demo_runs_every_stage(
    ray_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(["demo", f"work_dir={tmp_path / 'demo'}", "frames=60", "train=false"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "raw pixels (baseline)" in out and "recall@10" in out
    # the endpoint answered the query image over HTTP with its top-5
    assert "search endpoint (Ray Serve) at http://127.0.0.1:" in out
    table = out[out.index("search endpoint (Ray Serve)") :].splitlines()[1:7]
    assert table[0].split()[:4] == ["rank", "id", "item", "score"] and len(table[1:]) == 5
    assert "web page http://127.0.0.1:" in out
    metrics = json.loads((tmp_path / "demo" / "eval" / "metrics.json").read_text())
    assert metrics["items"] == 60 and 0 < metrics["positives"] < 60
    with open_index(tmp_path / "demo" / "index") as reader:
        assert reader.ntotal == 60
        assert reader.manifest["factory"].endswith("Flat")  # 60 vectors: exact fallback
    assert (tmp_path / "demo" / "index_eval" / "recall_qps.png").stat().st_size > 0


def test_demo_index_summary_is_exact_for_a_flat_index(ray_session: Any, tmp_path: Path) -> None:
    cfg = demo.Config(work_dir=str(tmp_path / "d"), frames=40, seed=1, train=False, serve=False)
    s = demo.run(cfg)
    assert s["frames"] == 40
    assert s["index"]["ntotal"] == 40
    assert s["index"]["recall@10"] == pytest.approx(1.0)  # exact index, exact re-rank
    assert s["index"]["latency_ms"] > 0
    assert set(s["timings_s"]) >= {"phantom + ingest", "embed", "index build", "index eval"}
    assert list(s["models"]) == ["raw pixels (baseline)"]  # train=false skips training


def test_unknown_training_labels_are_refused() -> None:
    with pytest.raises(ConfigError, match="train_labels: must be one of"):
        demo.Config(train_labels="breath")


def test_demo_sweep_is_a_checked_sweep_of_the_demo_finetune(tmp_path: Path) -> None:
    import yaml

    from echoseek.jobs.demo.stages import DEMO_DISTANCES, sweep_config, training_configs
    from echoseek.sweep.trial import trial_config
    from echoseek.sweep.tuner import prepare
    from tests.datasets import ingested_stack, random_stack

    dataset = ingested_stack(tmp_path, random_stack(20, 20, 24), labelled=24, shard_size=12)
    _, fine = training_configs(
        tmp_path, dataset, size=32, train_labels="phase", pretrain_epochs=1, finetune_epochs=3
    )
    cfg = sweep_config(tmp_path, fine)
    prep = prepare(cfg)  # every check a sweep makes before its first trial
    assert prep.epochs == 3 and cfg.scheduler.kind == "asha" and cfg.search == "grid"
    base = yaml.safe_load((tmp_path / "sweep_base.yaml").read_text())
    assert base["augment"] == yaml.safe_load(yaml.safe_dump(fine.augment.__dict__))
    assert base["pretrained"] == fine.pretrained and base["run"]["name"] == ""
    key = "loss.distance,loss.distance_params"
    for name, params in DEMO_DISTANCES:  # each trial: the demo's fine-tune, one distance
        trial = trial_config("finetune", prep.base, {key: [name, params]})
        assert (trial.loss.distance, trial.loss.distance_params) == (name, params)
        assert trial.scale.num_workers == fine.scale.num_workers == 2
        assert trial.epochs == fine.epochs == 3
        assert trial.augment == fine.augment and trial.head.trainable == "all"
    # one trial at a time, and its driver and workers leave a whole CPU to its data tasks
    assert cfg.trial_cpus + 2 * trial.scale.cpus_per_worker <= 1.0
    # a second demo run starts a new sweep (a same name would resume the old one)
    time.sleep(1.1)
    assert sweep_config(tmp_path, fine).name != cfg.name


def test_checkpoints_are_chosen_on_a_third_cine_and_the_summary_says_so(tmp_path: Path) -> None:
    from echoseek.jobs.demo.stages import training_configs
    from echoseek.jobs.demo.summary import data_protocol

    train, val = tmp_path / "train_dataset", tmp_path / "val_dataset"
    kwargs = {"size": 32, "train_labels": "phase", "pretrain_epochs": 1, "finetune_epochs": 3}
    _, fine = training_configs(tmp_path, train, val=val, **kwargs)
    assert fine.val == str(val) and fine.input == str(train)
    assert training_configs(tmp_path, train, **kwargs)[1].val == ""

    third = data_protocol(0, "phase", {"kind": "dataset", "val": str(val)}, 445)
    assert third["trained on"] == "phantom cine seed 1 (phase classes), 445 frames"
    assert third["selected on"].startswith("phantom cine seed 2 (phase classes), 445 frames")
    split = {"kind": "held_out_split", "train_rows": 356, "val_rows": 89}
    held = data_protocol(0, "phase", split, 445)
    assert "356 frames" in held["trained on"] and held["selected on"].startswith("89 other")
    assert "seed 0" in third["scored on"] and "never trained or selected on" in held["scored on"]
