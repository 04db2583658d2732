"""Ray Train checkpoints of a run: resume from the restored one, report an epoch with one."""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from torch import nn

from echoseek.training.state import load_state, save_state
from echoseek.training.unwrap import unwrap_model


def resume_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any = None) -> int:
    """The epoch to start from: 0, or the one after the checkpoint Ray Train restored (on a
    re-run of the same name or after a worker failure), whose state is loaded into the
    given components."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        state = load_state(directory, model=model, optimizer=optimizer, scaler=scaler)
    return int(state["epoch"]) + 1


def report_epoch(
    metrics: dict[str, Any],
    *,
    rank: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    scaler: Any = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """``ray.train.report`` on every rank; rank 0 attaches the training-state checkpoint."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_state(
            tmp,
            model=unwrap_model(model),
            optimizer=optimizer,
            epoch=epoch,
            scaler=scaler,
            metrics=metrics,
            extra=extra,
        )
        ray.train.report(
            {**metrics, PLACEMENT_GROUP: placement_group_hex()},
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"epoch-{epoch:05d}",
        )


PLACEMENT_GROUP = "placement_group"  # rank 0's report: the run's placement group (hex id)


def placement_group_hex() -> str:
    """The placement group this worker runs in, as a hex id ("" outside one). A sweep removes
    it when Tune stops the trial: the controller that would have is killed with the trial,
    and Train's own cleaner needs the dashboard's state API to notice."""
    import ray.util

    pg = ray.util.get_current_placement_group()
    return pg.id.hex() if pg is not None else ""
