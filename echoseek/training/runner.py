"""The epochs of one Ray Train worker: what pretraining and fine-tuning share.

A worker loop (:func:`echoseek.training.pretrain.pretrain_loop`,
:func:`echoseek.training.finetune.finetune_loop`) builds its model, optimizer, input and
augmentation, then hands them to :func:`run_epochs`, which runs the same epoch for both: the
caller's epoch hooks, one :func:`~echoseek.training.loop.train_epoch`, the epoch's metrics
(rank 0 adds its evaluation), rank 0's MLflow record and the Ray Train report with rank 0's
checkpoint. The loops show only what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from echoseek.tracking import RunLogger
from echoseek.training.loop import Batch, EpochStats, PrepareFn, StepFn, train_epoch
from echoseek.training.reporting import end_epoch, epoch_metrics
from echoseek.training.worker import EpochHook, run_hooks


@dataclass
class WorkerRun:
    """What every epoch of one worker's run shares."""

    model: nn.Module  # as prepared (device, DDP)
    optimizer: torch.optim.Optimizer
    scaler: Any  # GradScaler for float16, else None
    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int
    world: int
    steps_per_epoch: int
    lr_at: Callable[[int], float]  # lr of a global step
    logger: Any  # rank 0's MLflow RunLogger, None elsewhere
    hooks: Sequence[EpochHook]
    launched: float  # time.time() at the driver's start
    entered: float  # time.time() when this worker's loop began

    @classmethod
    def of(
        cls, config: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
        scaler: Any, device: torch.device, amp_dtype: torch.dtype | None, rank: int, world: int,
        steps_per_epoch: int, lr_at: Callable[[int], float], entered: float,
    ) -> WorkerRun:  # fmt: skip
        """The run of a worker's parts and what the driver put in its loop config: rank 0's
        MLflow run, the epoch hooks, the launch time."""
        logger = RunLogger(config["tracking"]).attach(config["run_id"]) if rank == 0 else None
        return cls(
            model, optimizer, scaler, device, amp_dtype, rank, world, steps_per_epoch, lr_at,
            logger, config["hooks"], config["launched"], entered,
        )  # fmt: skip


def no_extra(epoch: int, stats: EpochStats) -> dict[str, Any]:
    """No metrics beyond :func:`~echoseek.training.reporting.epoch_metrics`' own."""
    return {}


def start_up(run: WorkerRun, first: EpochStats) -> dict[str, float]:
    """Seconds from the driver's start to the worker loop, the first batch and the first step."""
    return {
        "worker_start_s": run.entered - run.launched,
        "first_batch_s": first.first_batch_at - run.launched,
        "first_step_s": first.first_step_at - run.launched,
    }


def run_epochs(
    run: WorkerRun,
    *,
    start: int,
    epochs: int,
    batches: Callable[[int], Iterable[Batch]],
    step_fn: StepFn,
    prepare: PrepareFn,
    evaluate: Callable[[], dict[str, float]],
    extra: Callable[[int, EpochStats], dict[str, Any]] = no_extra,
    max_steps: int | None = None,
    on_step_end: Callable[[], None] | None = None,
) -> None:
    """Epochs ``start`` .. ``epochs - 1`` of ``batches(epoch)``, each step's batch mapped by
    ``prepare`` on the device (augmentation) and trained with ``step_fn``.

    Every rank reports each epoch's metrics plus ``extra(epoch, stats)`` and where the start-up
    went, in seconds from the driver's start to this start's (or restart's) worker loop
    (``worker_start_s``), first batch (``first_batch_s``) and first optimizer step
    (``first_step_s``); rank 0 adds ``evaluate()``, logs the epoch to MLflow and attaches the
    checkpoint.
    """
    startup: dict[str, float] = {}
    for epoch in range(start, epochs):
        run_hooks(run.hooks, epoch, run.rank, run.world)
        stats = train_epoch(
            model=run.model,
            batches=batches(epoch),
            max_steps=max_steps,
            optimizer=run.optimizer,
            step_fn=step_fn,
            lr_at=run.lr_at,
            start_step=epoch * run.steps_per_epoch,
            device=run.device,
            amp_dtype=run.amp_dtype,
            scaler=run.scaler,
            on_step_end=on_step_end,
            prepare=prepare,
        )
        if epoch == start:
            startup = start_up(run, stats)
        metrics = epoch_metrics(epoch, stats, **startup, **extra(epoch, stats))
        if run.rank == 0:
            metrics.update(evaluate())
        end_epoch(
            metrics, stats, rank=run.rank, model=run.model, optimizer=run.optimizer,
            scaler=run.scaler, epoch=epoch, steps_per_epoch=run.steps_per_epoch,
            lr_at=run.lr_at, logger=run.logger,
        )  # fmt: skip
