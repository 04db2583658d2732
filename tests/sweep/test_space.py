"""Search spaces: shape errors, job-config checks before any trial, Tune objects, grid rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from echoseek.config import plain
from echoseek.errors import ConfigError
from echoseek.sweep.config import SweepConfig
from echoseek.sweep.space import check_space, parse_space, to_tune
from echoseek.sweep.trial import expand, reproducible, trial_config
from echoseek.sweep.tuner import prepare
from echoseek.training.finetune import FinetuneConfig

BASE = plain(FinetuneConfig(input="/data/ds", pretrained="/models/enc"))


def build(draw: dict[str, Any]) -> Any:
    return trial_config("finetune", BASE, draw)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "space: expected a non-empty mapping"),
        ({"optim.lr": [0.1, 0.2]}, "space.optim.lr: expected one of"),
        ({"optim.lr": {"normal": [0, 1]}}, "space.optim.lr: unknown kind 'normal'"),
        ({"loss.distance": {"choice": []}}, "space.loss.distance.choice: expected a non-empty"),
        ({"optim.lr": {"uniform": [1.0]}}, "space.optim.lr.uniform: expected [low, high]"),
        ({"optim.lr": {"uniform": [0.2, 0.1]}}, "low must be below high"),
        ({"optim.lr": {"loguniform": [0.0, 0.1]}}, "bounds must be positive"),
        ({"loss.m": {"randint": [2, 8.5]}}, "space.loss.m.randint: expected integer bounds"),
        ({"optim.lr": {"quniform": [0.1, 0.9, 0]}}, "q must be positive"),
    ],
)
def test_bad_shapes_name_the_field(space: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_space(space)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"optim.lrr": {"choice": [0.1]}},
            r"optim.lrr: 0.1 is refused .*unknown config field 'optim.lrr'",
        ),
        (
            {"loss.distance": {"choice": ["cosine", "l7"]}},
            r"space\.loss\.distance: 'l7' is refused",
        ),
        (
            {"epochs": {"choice": [2, "many"]}},
            r"epochs: 'many' is refused .*expected an integer",
        ),
        ({"loss.m": {"randint": [3, 6]}}, r"space\.loss\.m: 3 is refused .*multiple of loss\.m"),
        (  # the base distance (sqeuclidean) has no p: draw the pair instead
            {"loss.distance_params.p": {"grid": [1, 2]}},
            r"space\.loss\.distance_params\.p: 1 is refused .*sqeuclidean takes no param",
        ),
        ({"optim.lr": {"uniform": [-1.0, 0.1]}}, r"space\.optim\.lr: -1\.0 is refused"),
    ],
)
def test_values_the_job_refuses_fail_before_any_trial(space: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_space(parse_space(space), build)


def test_a_good_space_becomes_tune_objects_and_trial_configs() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    pairs = [["cosine", {}], ["soart3_gamma", {"p": 1}], ["soart3_gamma", {"p": math.inf}]]
    space = parse_space(
        {
            "loss.distance": {"choice": ["cosine", "soart3_gamma"]},
            "loss.distance,loss.distance_params": {"grid": pairs},
            "optim.lr": {"loguniform": [1e-4, 1e-2]},
            "loss.m": {"randint": [2, 5]},
            "augment.brightness,augment.contrast": {"quniform": [0.0, 0.8, 0.2]},
        }
    )
    check_space(space, build)
    tuned = to_tune(space)
    assert isinstance(tuned["loss.distance"], Categorical)
    grid = tuned["loss.distance,loss.distance_params"]["grid_search"]
    assert all(isinstance(v, str) for v in grid)  # Optuna's categories must be scalars
    spread = expand({"loss.distance,loss.distance_params": grid[2]})
    assert spread == {"loss.distance": "soart3_gamma", "loss.distance_params": {"p": math.inf}}
    assert build(spread).loss.distance_params == {"p": math.inf}
    assert isinstance(tuned["optim.lr"], Float) and isinstance(tuned["loss.m"], Integer)
    draw = {"optim.lr": 0.003, "augment.brightness,augment.contrast": 0.6, "loss.m": 4}
    cfg = build(draw)
    assert cfg.optim.lr == 0.003 and cfg.loss.m == 4
    assert cfg.augment.brightness == cfg.augment.contrast == 0.6
    assert expand(draw)["augment.contrast"] == 0.6
    assert BASE["optim"]["lr"] != 0.003  # the common config is not modified by a trial


def test_reproducible_config_reloads_as_the_job_config(tmp_path: Path) -> None:
    import yaml

    from echoseek.config import load_config

    drawn = to_tune(
        parse_space(
            {"loss.distance,loss.distance_params": {"grid": [["soart3_gamma", {"p": math.inf}]]}}
        )
    )["loss.distance,loss.distance_params"]
    draw = {"loss.distance,loss.distance_params": drawn["grid_search"][0], "optim.lr": 0.01}
    files = reproducible("finetune", BASE, draw)
    assert list(files) == ["best.yaml"]
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(files["best.yaml"], sort_keys=False))
    cfg = load_config(FinetuneConfig, path)
    assert cfg.optim.lr == 0.01 and cfg.loss.distance_params["p"] == math.inf
    assert cfg.run.name == "" and cfg.input == "/data/ds"


def sweep(tmp_path: Path, **kw: Any) -> SweepConfig:
    values: dict[str, Any] = {
        "input": str(tmp_path / "ds"),
        "fixed": {"pretrained": str(tmp_path / "enc")},
        "output": str(tmp_path / "out"),
        "storage_path": str(tmp_path / "ray"),
        "space": {"optim.lr": {"choice": [0.001, 0.01]}},
        **kw,
    }
    return SweepConfig(**values)


def test_prepare_resolves_a_copy_and_leaves_the_callers_config(tmp_path: Path) -> None:
    cfg = sweep(tmp_path, output="relative-out", storage_path="", name="")
    before = plain(cfg)
    prep = prepare(cfg)
    assert plain(cfg) == before  # the caller's config is as it was
    assert Path(prep.cfg.output) == Path("relative-out").resolve()
    assert prep.cfg.name.startswith("sweep-finetune-") and prep.cfg.storage_path


def test_search_rules_are_checked_before_ray(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"space\.optim\.lr: search=grid needs a list"):
        prepare(sweep(tmp_path, search="grid", space={"optim.lr": {"uniform": [0.001, 0.01]}}))
    with pytest.raises(ConfigError, match=r"search=optuna cannot take a grid"):
        prepare(sweep(tmp_path, search="optuna", space={"optim.lr": {"grid": [0.001, 0.01]}}))
    with pytest.raises(ConfigError, match="input: the trials' dataset is required"):
        prepare(sweep(tmp_path, input=""))
    with pytest.raises(ConfigError, match="unknown config field 'epoch'"):
        prepare(sweep(tmp_path, fixed={"epoch": 3}))
    grid = prepare(sweep(tmp_path, search="grid"))
    assert grid.space["optim.lr"].kind == "grid" and grid.epochs == FinetuneConfig().epochs
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("not a sweep")
    with pytest.raises(ConfigError, match="does not hold sweep 'mine'"):
        prepare(sweep(tmp_path, name="mine"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("job", "embed", "job: must be one of"),
        ("search", "bayes", "search: must be one of"),
        ("mode", "best", "mode: must be max or min"),
        ("num_samples", 0, "num_samples >= 1"),
        ("trial_cpus", 0.0, "trial_cpus: must be > 0"),
    ],
)
def test_bad_sweep_fields(tmp_path: Path, field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sweep(tmp_path, **{field: value})


def test_searches_cap_their_own_concurrency(tmp_path: Path) -> None:
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from echoseek.sweep.tuner import _search

    tpe = _search(sweep(tmp_path, search="optuna"), 3)
    assert isinstance(tpe, ConcurrencyLimiter) and tpe.max_concurrent == 3
    assert isinstance(tpe.searcher, OptunaSearch)
    basic = _search(sweep(tmp_path), 2)  # Tune ignores TuneConfig's cap for a passed-in search
    assert isinstance(basic, BasicVariantGenerator) and basic.max_concurrent == 2


def test_the_metric_must_be_one_the_trials_report(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"metric: finetune trials .* do not report 'val_mapp'"):
        prepare(sweep(tmp_path, metric="val_mapp"))
    pre = {"job": "pretrain", "fixed": {}, "space": {"optim.base_lr": {"choice": [0.05]}}}
    with pytest.raises(ConfigError, match=r"do not report 'val_map' .*rankme, collapse_std"):
        prepare(sweep(tmp_path, **pre))  # no val= dataset: no retrieval metric
    assert prepare(sweep(tmp_path, **pre, metric="rankme")).epochs >= 1
    assert prepare(sweep(tmp_path, **{**pre, "fixed": {"val": str(tmp_path)}})).epochs >= 1
