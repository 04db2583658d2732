"""The ``TorchTrainer`` of a training job: scaling, storage, checkpoints kept, failures allowed,
the Ray Data task limit, and the driver's side of a run (progress lines, a failed run marked)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from typing import Any

from echoseek.ray_session import cluster_has_gpus
from echoseek.storage import storage_uri
from echoseek.training.options import RunOptions, ScaleOptions
from echoseek.training.printer import EpochPrinter, as_user_callback
from echoseek.training.trial import Trial


def make_trainer(
    loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    *,
    scale: ScaleOptions,
    run: RunOptions,
    datasets: Mapping[str, Any],
    split: list[str],
    score: str,
    mode: str,
    callbacks: list[Any] | None = None,
) -> Any:
    """A ``TorchTrainer`` for ``loop`` with the job's scaling, storage and failure policy."""
    from ray.train import (
        CheckpointConfig,
        DataConfig,
        FailureConfig,
        LoggingConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchTrainer

    use_gpu = cluster_has_gpus() if scale.use_gpu is None else scale.use_gpu
    resources = {"CPU": scale.cpus_per_worker, **({"GPU": 1} if use_gpu else {}), **scale.resources}
    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=scale.num_workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(  # type: ignore[call-arg]  # Train V2 RunConfig
            name=run.name,
            storage_path=storage_uri(run.storage_path),
            checkpoint_config=CheckpointConfig(
                num_to_keep=run.keep, checkpoint_score_attribute=score, checkpoint_score_order=mode
            ),
            failure_config=FailureConfig(max_failures=run.max_failures),
            callbacks=callbacks or [],
            logging_config=LoggingConfig(log_level="WARNING"),  # our epoch line says enough
        ),
        datasets=dict(datasets),
        dataset_config=DataConfig(datasets_to_split=split),
    )


def data_task_limit(scale: ScaleOptions, cluster_cpus: float) -> int:
    """How many decode/augment tasks a job's Ray Data stream runs at once.

    ``scale.data_tasks`` when set, else the cluster's CPUs left after the Train workers'
    reservations, at least 1: ``max(1, floor(cpus - num_workers x cpus_per_worker))``.
    Uncapped, Ray Data starts a task (a worker process that imports torch) per fraction of a
    CPU; on a 2-core laptop the imports alone starve the step (3 passes over 480 frames:
    46.6 s uncapped, 15.9 s with 1 task; bench/bench_data_tasks.py, BENCHMARKS.md).
    """
    if scale.data_tasks:
        return scale.data_tasks
    return max(1, math.floor(cluster_cpus - scale.num_workers * scale.cpus_per_worker))


def progress(
    trial: Trial | None, epochs: int, metric: str
) -> tuple[EpochPrinter | None, list[Any]]:
    """The epoch printer and Ray Train callbacks of a run: a job prints one line per epoch; a
    sweep trial reports to Tune instead."""
    if trial is not None:
        return None, list(trial.callbacks)
    printer = EpochPrinter(epochs, metric)
    return printer, [as_user_callback(printer)]


def fit_tracked(trainer: Any, logger: Any, printer: EpochPrinter | None) -> Any:
    """``trainer.fit()`` with the printer's lines (if any) relayed to this terminal; a failed
    run is marked FAILED in MLflow before the error propagates."""
    try:
        with printer.relay() if printer is not None else contextlib.nullcontext():
            return trainer.fit()
    except Exception:
        logger.end("FAILED")
        raise
