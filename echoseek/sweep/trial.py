"""A sweep trial: the job's own training function, called with one draw of the space.

The trial runs in a Tune actor and builds the same ``TorchTrainer`` the job builds
(:func:`echoseek.training.pretrain.pretrain` or :func:`~echoseek.training.finetune.finetune`),
with Ray's Tune-Train bridge (``TuneReportCallback``) reporting each epoch's metrics to Tune and
its MLflow run nested under the sweep's parent run. Its Train run is named after the trial, so
a retried trial resumes from its last checkpoint instead of starting over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoseek.config import from_dict, plain, with_values
from echoseek.storage import absolute
from echoseek.sweep.chain import STAGES, ChainConfig, pretrain_then_finetune, stages
from echoseek.sweep.space import decode
from echoseek.training import finetune as finetuning
from echoseek.training import pretrain as pretraining
from echoseek.training.trial import Trial


@dataclass(frozen=True)
class Job:
    """A job a trial can run: its config class and training function."""

    config: type
    train: Callable[..., dict[str, Any]]


def job(name: str) -> Job:
    """``pretrain``, ``finetune`` or the chain ``pretrain+finetune``."""
    if name == "pretrain+finetune":
        return Job(ChainConfig, pretrain_then_finetune)
    if name == "pretrain":
        return Job(pretraining.PretrainConfig, pretraining.pretrain)
    return Job(finetuning.FinetuneConfig, finetuning.finetune)


def expand(draw: Mapping[str, Any]) -> dict[str, Any]:
    """A draw as dotted field -> value. A key naming several fields (``"augment.brightness,
    augment.contrast"``) sets each of them to the one drawn value, or, when the value is a
    list of one value per field (``[soart3_gamma, {p: 2}]`` for ``"loss.distance,
    loss.distance_params"``), each field to its own."""
    out: dict[str, Any] = {}
    for key, raw in draw.items():
        fields = [part.strip() for part in key.split(",") if part.strip()]
        value = decode(raw)
        if len(fields) > 1 and isinstance(value, list) and len(value) == len(fields):
            out.update(zip(fields, value, strict=True))
        else:
            out.update(dict.fromkeys(fields, value))
    return out


def base_config(job_name: str, base: Mapping[str, Any], fixed: Mapping[str, Any]) -> Any:
    """The trials' common config: ``base`` with ``fixed`` applied and local paths made
    absolute on the driver (trials run in their own working directories)."""
    cfg: Any = with_values(job(job_name).config, base, fixed)
    for stage in stages(cfg):
        for name in ("input", "val", "pretrained"):
            if hasattr(stage, name):
                setattr(stage, name, absolute(getattr(stage, name)))
    return cfg


def trial_config(job_name: str, base: Mapping[str, Any], draw: Mapping[str, Any]) -> Any:
    """One trial's job config: the common config (plain dicts) with the draw applied."""
    return with_values(job(job_name).config, base, expand(draw))


def run_trial(config: dict[str, Any]) -> None:
    """Tune's function trainable. ``config``: ``params`` (the draw) and ``sweep`` (the job
    name, the common config, the parent MLflow run, where trials keep runs and models)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    sweep, draw = config["sweep"], dict(config["params"])
    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(sweep["job"], sweep["base"], draw)
    parts = stages(cfg)
    for i, stage in enumerate(parts):
        name = trial_id if i == len(parts) - 1 else f"{trial_id}-{STAGES[i]}"
        stage.run.name = f"{sweep['name']}-{name}"
        stage.run.storage_path = sweep["train_storage"]
        stage.run.tracking_uri = sweep["tracking"]
        stage.run.experiment = sweep["experiment"]
        stage.run.register = ""
        stage.output = str(Path(sweep["models"]) / name)
        stage.overwrite = True  # a retried trial rewrites its own model
    trial = Trial(sweep["parent_run_id"], expand(draw), [TuneReportCallback()])
    job(sweep["job"]).train(cfg, hooks=sweep.get("hooks", ()), trial=trial)


def reported(cfg: Any) -> tuple[str, ...]:
    """The metrics a trial of ``cfg`` reports to Tune each epoch (its last stage's)."""
    last = stages(cfg)[-1]
    if isinstance(last, pretraining.PretrainConfig):
        return pretraining.reported(last)
    return finetuning.reported(last)


def trial_dirname(trial: Any) -> str:
    """A trial's directory under the sweep: its id, so a trial that failed before reporting
    anything is still known by id (Tune's default is a long name of its params)."""
    return str(trial.trial_id)


def reproducible(
    job_name: str, base: Mapping[str, Any], draw: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The job configs (file name -> plain dicts) that rerun a trial outside the sweep, the
    draw applied and the runs named by their user: ``best.yaml`` (``echoseek pretrain`` or
    ``echoseek finetune``); a chained trial adds ``best_pretrain.yaml``, and its ``best.yaml``
    fine-tunes the encoder that one writes."""
    cfg = trial_config(job_name, base, draw)
    parts = stages(cfg)
    for stage in parts:
        stage.run.name = ""
    if len(parts) == 2:
        parts[1].pretrained = parts[0].output
    files = {"best.yaml": plain(parts[-1])}
    if len(parts) == 2:
        files["best_pretrain.yaml"] = plain(parts[0])
    for data, stage in zip(files.values(), reversed(parts), strict=True):
        from_dict(type(stage), data)  # still a valid config
    return files
