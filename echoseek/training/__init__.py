"""echoseek.training: the small pure helpers a Ray Train worker loop wires together.

Learning-rate schedule (:mod:`schedule`), checkpoints (:mod:`state`) and one epoch of
training with the evaluation metrics (:mod:`loop`); mixed precision
(:mod:`echoseek.models.precision`) and the live progress line (:mod:`echoseek.progress`) are
re-exported from the layers below. Nothing here imports Ray: every helper runs in a plain
process, and the jobs call them from ``train_loop_per_worker``.
"""

from echoseek.models.precision import amp_dtype, autocast, make_scaler
from echoseek.progress import epoch_line, eta_seconds, format_duration
from echoseek.training.loop import (
    EpochStats,
    NonFiniteLossError,
    augmented_inputs,
    embed_batches,
    fastap_step,
    representation_metrics,
    retrieval_metrics,
    ssl_step,
    train_epoch,
    two_view_inputs,
)
from echoseek.training.schedule import param_groups, scaled_lr, set_lr, warmup_cosine
from echoseek.training.state import load_state, save_state
from echoseek.training.unwrap import unwrap_model

__all__ = [
    "EpochStats",
    "NonFiniteLossError",
    "amp_dtype",
    "augmented_inputs",
    "autocast",
    "embed_batches",
    "epoch_line",
    "eta_seconds",
    "fastap_step",
    "format_duration",
    "load_state",
    "make_scaler",
    "param_groups",
    "representation_metrics",
    "retrieval_metrics",
    "save_state",
    "scaled_lr",
    "set_lr",
    "ssl_step",
    "train_epoch",
    "two_view_inputs",
    "unwrap_model",
    "warmup_cosine",
]
