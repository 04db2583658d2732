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

from echoseek.config import from_dict, with_values
from echoseek.training.ray import Trial, absolute, plain


@dataclass(frozen=True)
class Job:
    """A job a trial can run: its config class and training function."""

    config: type
    train: Callable[..., dict[str, Any]]


def job(name: str) -> Job:
    """``pretrain`` or ``finetune`` (imported when asked for)."""
    if name == "pretrain":
        from echoseek.training.pretrain import PretrainConfig, pretrain

        return Job(PretrainConfig, pretrain)
    from echoseek.training.finetune import FinetuneConfig, finetune

    return Job(FinetuneConfig, finetune)


def expand(draw: Mapping[str, Any]) -> dict[str, Any]:
    """A draw as dotted field -> value; a key naming several fields (``"augment.brightness,
    augment.contrast"``) sets each of them to the one drawn value."""
    return {part.strip(): value for key, value in draw.items() for part in key.split(",") if part}


def base_config(job_name: str, base: Mapping[str, Any], fixed: Mapping[str, Any]) -> Any:
    """The trials' common config: ``base`` with ``fixed`` applied and local paths made
    absolute on the driver (trials run in their own working directories)."""
    cfg: Any = with_values(job(job_name).config, base, fixed)
    for name in ("input", "val", "pretrained"):
        if hasattr(cfg, name):
            setattr(cfg, name, absolute(getattr(cfg, name)))
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
    cfg.run.name = f"{sweep['name']}-{trial_id}"
    cfg.run.storage_path = sweep["train_storage"]
    cfg.run.tracking_uri = sweep["tracking"]
    cfg.run.experiment = sweep["experiment"]
    cfg.run.register = ""
    cfg.output = str(Path(sweep["models"]) / trial_id)
    cfg.overwrite = True  # a retried trial rewrites its own model
    trial = Trial(sweep["parent_run_id"], expand(draw), [TuneReportCallback()])
    job(sweep["job"]).train(cfg, trial=trial)


def reproducible(job_name: str, base: Mapping[str, Any], draw: Mapping[str, Any]) -> dict:
    """The job config (plain dicts) that reruns a trial outside the sweep: the draw applied,
    the run named by its user."""
    cfg = trial_config(job_name, base, draw)
    cfg.run.name = ""
    data = plain(cfg)
    from_dict(job(job_name).config, data)  # still a valid config
    return data
