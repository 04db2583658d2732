"""What every epoch reports (metrics, MLflow on rank 0, the Ray Train report) and how the run
fed its device."""

from __future__ import annotations

import resource
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from echoseek.tracking import git_commit
from echoseek.training.checkpoint import report_epoch


def epoch_metrics(epoch: int, stats: Any, **extra: Any) -> dict[str, Any]:
    """What every worker reports for an epoch: loss, img/s, the share of step time spent
    waiting for data, this process's peak RSS and its device's peak allocated memory (MiB, 0
    without a GPU), and ``extra``."""
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else 0.0
    return {
        "epoch": epoch,
        "loss": stats.loss,
        "images_per_s": stats.images_per_s,
        "data_wait_fraction": stats.wait_fraction,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "gpu_peak_mb": gpu,
        **extra,
    }


def log_epoch(
    logger: Any,
    metrics: Mapping[str, Any],
    *,
    epoch: int,
    first_step: int,
    step_losses: Sequence[float],
    lr_at: Callable[[int], float],
) -> None:
    """Rank 0's MLflow record of an epoch: its metrics at step ``epoch``, and per step
    (global step numbers) ``step_loss`` and ``step_lr``, in a few batched calls."""
    if logger is None:
        return
    logger.log_metrics(metrics, step=epoch)
    logger.log_series("step_loss", first_step, step_losses)
    logger.log_series(
        "step_lr", first_step, [lr_at(first_step + i) for i in range(len(step_losses))]
    )


def end_epoch(
    metrics: dict[str, Any],
    stats: Any,
    *,
    rank: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    epoch: int,
    steps_per_epoch: int,
    lr_at: Callable[[int], float],
    logger: Any,
) -> None:
    """Log the epoch to MLflow (rank 0), then report it (rank 0 attaches the checkpoint).

    In this order a committed checkpoint implies its epoch is in MLflow: once every rank has
    reported, a worker that dies may take rank 0 down with it before anything after the
    report runs, and the restart resumes after that checkpoint.
    """
    log_epoch(
        logger,
        metrics,
        epoch=epoch,
        first_step=epoch * steps_per_epoch,
        step_losses=stats.step_losses,
        lr_at=lr_at,
    )
    report_epoch(metrics, rank=rank, model=model, optimizer=optimizer, epoch=epoch, scaler=scaler)


FEED = ("worker_start_s", "first_batch_s", "first_step_s", "images_per_s", "data_wait_fraction",
        "gpu_peak_mb")  # fmt: skip


def feed_summary(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """How well a run fed its device, from an epoch's metrics (rank 0's): seconds from the
    driver's start to the worker loop, its first batch and first optimizer step, img/s, data
    wait, peak GPU memory."""
    return {key: float(metrics[key]) for key in FEED if metrics and key in metrics}


def run_tags(job: str, dataset: Mapping[str, Any], **extra: str) -> dict[str, str]:
    """MLflow tags of a training run: job, git commit, Ray version, dataset sha256, extras."""
    import ray

    return {
        "job": job,
        "git_commit": git_commit(),
        "ray_version": ray.__version__,
        "dataset_sha256": str(dataset.get("sha256", "")),
        **extra,
    }
