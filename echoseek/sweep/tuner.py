"""Run a sweep on Ray Tune: check the space, start or resume the Tuner, publish the results.

Everything is checked before a trial starts (:func:`prepare`): the base config with every
edge value of the space, the search's constraints (grid needs lists, Optuna cannot take a
grid), the output. Re-running a sweep of the same ``name`` restores it
(``Tuner.restore(..., resume_errored=True)``): finished trials are not run again, and failed
ones run again from their last checkpoint. The MLflow parent run is reopened by name, so a
resumed sweep keeps one parent; every trial is a child run (``mlflow.parentRunId``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from echoseek.config import flatten, plain, read_yaml
from echoseek.errors import ConfigError
from echoseek.ray_session import cluster_has_gpus, ensure_ray, is_verbose
from echoseek.registry import CANDIDATE, set_alias
from echoseek.registry import register as register_version
from echoseek.storage import absolute, staged_dir, storage_uri
from echoseek.sweep import results
from echoseek.sweep.chain import NAME as CHAIN
from echoseek.sweep.chain import STAGES, stages
from echoseek.sweep.config import SweepConfig
from echoseek.sweep.placement import ReleasePlacementGroups
from echoseek.sweep.progress import SweepPrinter, top_table
from echoseek.sweep.space import Param, check_space, has_grid, parse_space, to_tune
from echoseek.sweep.trial import (
    base_config,
    expand,
    reported,
    reproducible,
    run_trial,
    trial_config,
    trial_dirname,
)
from echoseek.tracking import RunLogger
from echoseek.training.worker import EpochHook

SWEEP_FILE = "sweep.json"


@dataclass
class Prepared:
    """A checked sweep: its resolved config (a copy), the parsed space, the trials' common
    config and its epochs."""

    cfg: SweepConfig
    space: dict[str, Param]
    base: dict[str, Any]
    epochs: int


def prepare(cfg: SweepConfig) -> Prepared:
    """Every check that needs no trial; fails naming the field. ``cfg`` is left as it is."""
    cfg = dataclasses.replace(
        cfg,
        output=absolute(cfg.output),
        storage_path=storage_uri(cfg.storage_path),
        name=cfg.name or f"sweep-{cfg.job}-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    inputs = {f"{s}.input" if cfg.job == CHAIN else "input": cfg.input for s in STAGES}
    fixed = {**flatten(cfg.fixed), **(inputs if cfg.input else {})}
    common = base_config(cfg.job, _base_data(cfg), fixed)
    if not all(stage.input for stage in stages(common)):
        raise ConfigError("input: the trials' dataset is required (input= or the base config's)")
    if cfg.job == CHAIN and not common.finetune.val:
        raise ConfigError(
            "finetune.val: a chained trial needs a held-out labelled dataset (pretraining "
            "sees every row of input, so no split of input would be held out)"
        )
    metrics = reported(common)
    if cfg.metric not in metrics:
        raise ConfigError(
            f"metric: {cfg.job} trials of this config do not report '{cfg.metric}' "
            f"(they report: {', '.join(metrics)})"
        )
    base = plain(common)
    space = parse_space(cfg.space)
    if cfg.search == "grid":
        for key, p in space.items():
            if p.kind not in ("choice", "grid"):
                raise ConfigError(f"space.{key}: search=grid needs a list (choice or grid)")
        space = {k: Param(k, "grid", p.args) for k, p in space.items()}
    if cfg.search == "optuna" and has_grid(space):
        raise ConfigError("space: search=optuna cannot take a grid (use choice)")
    check_space(space, lambda draw: trial_config(cfg.job, base, draw))
    check_output(cfg)
    return Prepared(cfg, space, base, int(stages(common)[-1].epochs))


def _base_data(cfg: SweepConfig) -> dict[str, Any]:
    """The trials' base config as plain data: ``base`` read from its YAML; for the chain, a
    mapping ``{pretrain: YAML, finetune: YAML}`` (either may be left out: its defaults)."""
    if cfg.job != CHAIN:
        if not isinstance(cfg.base, str):
            raise ConfigError(f"base: expected the {cfg.job} job's YAML file, got {cfg.base!r}")
        return read_yaml(cfg.base) if cfg.base else {}
    if not isinstance(cfg.base, dict) and cfg.base:
        raise ConfigError(f"base: job {CHAIN} needs {{pretrain: YAML, finetune: YAML}}")
    parts = cfg.base or {}
    unknown = sorted(set(parts) - set(STAGES))
    if unknown:
        raise ConfigError(f"base: unknown stage '{unknown[0]}' (known: {', '.join(STAGES)})")
    return {stage: read_yaml(path) for stage, path in parts.items() if path}


def check_output(cfg: SweepConfig) -> None:
    """The output dir is new, or holds an earlier publication of this same sweep."""
    out = Path(cfg.output)
    if out.is_dir() and any(out.iterdir()):
        try:
            name = json.loads((out / SWEEP_FILE).read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            name = None
        if name != cfg.name:
            raise ConfigError(f"output: {out} exists and does not hold sweep '{cfg.name}'")


def concurrency(cfg: SweepConfig, *scales: dict[str, Any]) -> int:
    """``max_concurrent_trials``: as configured, else how many trials the cluster holds at once
    (each: its driver's CPUs, its Train workers' CPUs (and GPUs) and one data task); more
    would deadlock, each trial's data tasks waiting for CPUs the others' workers hold."""
    if cfg.max_concurrent_trials:
        return cfg.max_concurrent_trials
    import ray

    have = ray.cluster_resources()
    fits = []
    for scale in scales:  # a chain's stages run one after the other: the larger one counts
        workers = scale["num_workers"]
        # a Ray Data read lists its files in a task of one whole CPU (not configurable in 2.60)
        data = max(float(scale["data_cpus"]), 1.0)
        need = {"CPU": cfg.trial_cpus + workers * scale["cpus_per_worker"] + data}
        use_gpu = cluster_has_gpus() if scale["use_gpu"] is None else scale["use_gpu"]
        if use_gpu:
            need["GPU"] = float(workers)
        fits += [math.floor(float(have.get(k, 0.0)) / v + 1e-9) for k, v in need.items() if v]
    return max(1, min(fits) if fits else 1)


def run_sweep(cfg: SweepConfig, hooks: Sequence[EpochHook] = ()) -> dict[str, Any]:
    """Run (or resume) the sweep, publish its output, log it to the parent run; a summary.
    ``hooks`` go to every trial's worker loops (as in :func:`~echoseek.training.pretrain.
    pretrain`; tests crash a worker this way)."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    prep = prepare(cfg)
    cfg = prep.cfg
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/TensorBoard files
    if not is_verbose():  # Tune's own reporter prints its header box even at verbose=0
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logger = RunLogger(cfg.tracking_uri, cfg.experiment)
    ensure_ray()
    parent = logger.start(cfg.name, plain(cfg), {"job": "tune", "sweep_job": cfg.job})
    root = f"{cfg.storage_path}/{cfg.name}"
    context = {
        "job": cfg.job,
        "name": cfg.name,
        "base": prep.base,
        "parent_run_id": parent,
        "tracking": logger.uri,
        "experiment": cfg.experiment,
        "train_storage": f"{root}-train",
        "models": f"{root}-models",
        "hooks": list(hooks),
    }
    trainable = tune.with_resources(run_trial, {"cpu": cfg.trial_cpus})
    max_t = cfg.scheduler.max_t or prep.epochs
    printer = SweepPrinter(cfg.metric, cfg.mode, max_t)
    started = time.perf_counter()
    path = f"{cfg.storage_path}/{cfg.name}"
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"params": to_tune(prep.space), "sweep": context},
            tune_config=tune.TuneConfig(
                metric=cfg.metric,
                mode=cfg.mode,
                num_samples=cfg.num_samples,
                search_alg=_search(cfg, concurrency(cfg, *_scales(prep.base))),
                scheduler=_scheduler(cfg, max_t),
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=cfg.name,
                storage_path=cfg.storage_path,
                # result.json per trial: the per-epoch history results.parquet is built from
                callbacks=[printer, ReleasePlacementGroups(), JsonLoggerCallback()],
                failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                verbose=0,
            ),
        )
    try:
        grid = tuner.fit()
    except Exception:
        logger.end("FAILED")
        raise
    rows = results.ranked(
        [results.trial_row(grid[i], cfg.metric, cfg.mode, max_t) for i in range(len(grid))],
        cfg.mode,
    )
    summary = publish(cfg, prep, rows, logger, parent)
    print(top_table(rows, cfg.metric, list(prep.space)), flush=True)
    logger.end()
    return {**summary, "seconds": time.perf_counter() - started}


def _scales(base: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``scale`` of each stage of a trial's (plain) config."""
    return [base[s]["scale"] for s in STAGES] if "scale" not in base else [base["scale"]]


def _search(cfg: SweepConfig, concurrent: int) -> Any:
    """The search algorithm, running at most ``concurrent`` trials at once (Tune ignores
    ``TuneConfig.max_concurrent_trials`` for a search algorithm passed in)."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if cfg.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=cfg.seed), max_concurrent=concurrent)
    return BasicVariantGenerator(random_state=cfg.seed, max_concurrent=concurrent)


def _scheduler(cfg: SweepConfig, max_t: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = cfg.scheduler
    if s.kind == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_t,
        grace_period=min(s.grace_period, max_t),
        reduction_factor=s.reduction_factor,
        stop_last_trials=False,  # a trial at max_t finishes itself: exports and logs its model
    )


def publish(
    cfg: SweepConfig, prep: Prepared, rows: list[dict[str, Any]], logger: Any, parent: str
) -> dict[str, Any]:
    """Write ``results.parquet``, ``best.yaml``, ``sweep.json`` and the figures as one
    directory, close the trials' child runs, tag the best, register it when asked."""
    keys = list(prep.space)
    children = child_runs(logger, parent)
    for row in rows:
        name = f"{cfg.name}-{row['trial_id']}"
        row["run_id"] = children.get(name, "")
        close_child(logger, parent, name, row)
    best = results.best_finished(rows, cfg.mode)
    ranks, values = results.rankme_pairs(rows)
    rho = results.spearman(ranks, values)
    with staged_dir(cfg.output, overwrite=True) as out:
        results.write_table(rows, keys, out / "results.parquet")
        if best is not None:
            for name, data in reproducible(cfg.job, prep.base, best["params"]).items():
                (out / name).write_text(yaml.safe_dump(data, sort_keys=False))
        results.figures(rows, keys, cfg.metric, out)
        (out / SWEEP_FILE).write_text(json.dumps({"name": cfg.name, "job": cfg.job}))
    logger.log_artifacts(cfg.output, "sweep")
    tags = {"best_trial": best["trial_id"], "best_run_id": best["run_id"]} if best else {}
    verdict = results.rankme_verdict(rho, len(ranks))
    logger.set_tags({**tags, "rankme_spearman": f"{rho:.3f}", "rankme_tracks_metric": verdict})
    if best is not None:
        logger.log_metrics({f"best_{cfg.metric}": best["best"], "rankme_spearman": rho}, 0)
    registered = register(cfg, best, logger) if cfg.register and best else ""
    counts = {s: sum(r["status"] == s for r in rows) for s in ("finished", "stopped", "failed")}
    return {
        "output": cfg.output,
        "run_id": parent,
        "trials": len(rows),
        **counts,
        "best_trial": best["trial_id"] if best else "",
        f"best_{cfg.metric}": best["best"] if best else math.nan,
        "best_params": best["params"] if best else {},
        "best_model": f"{cfg.storage_path}/{cfg.name}-models/{best['trial_id']}" if best else "",
        "rankme_spearman": rho,
        "rankme_verdict": verdict,
        "registered": registered,
    }


def child_runs(logger: Any, parent: str) -> dict[str, str]:
    """Run name -> run id of the parent's child runs."""
    runs = logger.client.search_runs(
        [logger.client.get_run(parent).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
        max_results=5000,
    )
    return {r.info.run_name: r.info.run_id for r in runs}


def close_child(logger: Any, parent: str, name: str, row: dict[str, Any]) -> None:
    """A stopped trial's run ends KILLED, a failed one FAILED with its error as a tag; a trial
    that failed before its job opened a run gets one, so MLflow lists every trial."""
    if row["status"] == "finished":
        return
    child = type(logger)(logger.uri, logger.experiment)
    if row["run_id"]:
        child.attach(row["run_id"])
    else:
        params = {f"override.{k}": v for k, v in expand(row["params"]).items()}
        row["run_id"] = child.start(name, params, {"mlflow.parentRunId": parent, "job": "trial"})
    if row["error"]:
        child.set_tags({"error": row["error"][:5000]})
    child.end("KILLED" if row["status"] == "stopped" else "FAILED")


def register(cfg: SweepConfig, best: dict[str, Any], logger: Any) -> str:
    """Register the best trial's model as ``cfg.register`` and point ``@candidate`` at it."""
    version = register_version(f"runs:/{best['run_id']}/model", cfg.register, logger.uri).version
    set_alias(cfg.register, CANDIDATE, version, logger.uri)
    return f"models:/{cfg.register}@candidate (version {version})"
