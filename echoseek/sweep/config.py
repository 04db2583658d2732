"""The sweep's own config: which job its trials run, on what, searched how, stopped when."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from echoseek.errors import ConfigError

SEARCHES = ("random", "grid", "optuna")
JOBS = ("pretrain", "finetune", "pretrain+finetune", "rerank")  # what a trial runs
SCHEDULERS = ("asha", "fifo")


@dataclass
class SchedulerOptions:
    """Early stopping: ASHA on the per-epoch held-out metric, or ``fifo`` (none)."""

    kind: str = "asha"
    grace_period: int = 1  # epochs every trial runs before it can be stopped
    reduction_factor: float = 2.0  # 1/reduction_factor of the trials go on at each rung
    max_t: int = 0  # the last rung, in epochs; 0: the trial config's epochs

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise ConfigError(f"scheduler.kind: must be one of {list(SCHEDULERS)}")
        if self.grace_period < 1 or self.reduction_factor <= 1 or self.max_t < 0:
            raise ConfigError(
                "scheduler: grace_period >= 1, reduction_factor > 1 and max_t >= 0 are required"
            )


@dataclass
class SweepConfig:
    """A sweep: ``num_samples`` trials of ``job`` (its ``base`` config with ``fixed`` and one
    draw from ``space`` applied), ranked by the trials' held-out ``metric``."""

    name: str = ""  # the sweep; re-running the same name resumes it (default: job + time)
    job: str = "finetune"  # pretrain | finetune | pretrain+finetune (chained) | rerank
    base: str | dict[str, str] = ""  # the job's YAML ("": its defaults); chain: per stage
    fixed: dict[str, Any] = field(default_factory=dict)  # dotted overrides every trial gets
    input: str = ""  # the trials' input dataset (replaces base's); rerank: held-out vectors
    index: str = ""  # rerank: the index version whose re-ranking is swept (no training)
    output: str = "work/sweep"  # results.parquet, best.yaml, figures; trial models in trials/
    space: dict[str, Any] = field(default_factory=dict)  # field: {choice|grid|...: values}
    search: str = "random"  # random | grid | optuna (TPE)
    num_samples: int = 4  # trials drawn (random/optuna); grid: repeats of the whole grid
    metric: str = "val_map"  # any metric the trial reports per epoch
    mode: str = "max"
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    max_concurrent_trials: int = 0  # 0: as many as the cluster's CPUs (GPUs) hold
    trial_cpus: float = 0.25  # reserved by each trial's driver (it runs the TorchTrainer)
    max_failures: int = 1  # a crashed trial is retried from its last checkpoint
    seed: int = 0
    storage_path: str = "work/ray_results"  # Tune state and the trials' Train runs
    tracking_uri: str = ""  # MLflow; default $MLFLOW_TRACKING_URI or the local mlflow/ store
    experiment: str = "echoseek"
    register: str = ""  # register the best trial's model under this name, alias @candidate

    def __post_init__(self) -> None:
        if self.job not in JOBS:
            raise ConfigError(f"job: must be one of {list(JOBS)}, got '{self.job}'")
        if self.search not in SEARCHES:
            raise ConfigError(f"search: must be one of {list(SEARCHES)}, got '{self.search}'")
        if self.mode not in ("max", "min"):
            raise ConfigError(f"mode: must be max or min, got '{self.mode}'")
        if self.num_samples < 1 or self.max_concurrent_trials < 0 or self.max_failures < 0:
            raise ConfigError("num_samples >= 1, max_concurrent_trials >= 0, max_failures >= 0")
        if self.trial_cpus <= 0:  # Tune places a trial by its driver's resources
            raise ConfigError(f"trial_cpus: must be > 0, got {self.trial_cpus}")
