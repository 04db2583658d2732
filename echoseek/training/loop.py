"""One training epoch, one embedding pass, and the metrics a run reports after each epoch.

:func:`train_epoch` is generic over the method: a ``step_fn(model, batch) -> loss`` turns a
batch into a scalar loss (:func:`ssl_step` for two augmented views, :func:`fastap_step` for
images with labels). Batches are dicts of tensors, as Ray Data's ``iter_torch_batches`` yields:

- SSL: ``{"view1": NxCxHxW, "view2": NxCxHxW, "index": N (optional)}``;
- FastAP and embedding: ``{"image": NxCxHxW, "label": N}`` (label -1 = unlabelled).

The data stream delivers uint8 frames; ``prepare`` (a batch -> batch function, e.g.
:func:`two_view_inputs` around an :class:`~echoseek.data.augment.Augmenter`) turns them into
the model's input on the device, inside the step's time, not the data wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from echoseek.data.augment import Augmenter
from echoseek.distances import similarity_numpy
from echoseek.errors import EchoseekError, InputError
from echoseek.evaluation.ranking import (
    collapse_std,
    leave_one_out_from_scores,
    leave_one_out_queries,
    rankme,
)
from echoseek.models.precision import autocast
from echoseek.training.schedule import set_lr

Batch = Mapping[str, torch.Tensor]
StepFn = Callable[[nn.Module, Batch], torch.Tensor]
PrepareFn = Callable[[Batch], Batch]


class NonFiniteLossError(EchoseekError):
    """The loss became NaN or infinite: training diverged (lr too high, bad inputs)."""


@dataclass(frozen=True)
class EpochStats:
    """What one call of :func:`train_epoch` did.

    ``seconds`` is the wall time of the whole epoch; ``data_wait_seconds`` the part spent
    blocked on the batch iterator (the accelerator idles then), so
    ``wait_fraction = data_wait_seconds / seconds`` says whether input is the bottleneck.
    ``images`` counts samples (an SSL sample of two views counts once); ``step_losses`` holds
    each step's loss, for per-step tracking; ``first_batch_at`` and ``first_step_at`` the wall
    clock (``time.time()``) when the epoch's first batch arrived and its first optimizer step
    finished, to time a run's start-up.
    """

    loss: float
    steps: int
    images: int
    seconds: float
    data_wait_seconds: float
    step_losses: tuple[float, ...] = ()
    first_step_at: float = math.nan
    first_batch_at: float = math.nan

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.nan

    @property
    def wait_fraction(self) -> float:
        return self.data_wait_seconds / self.seconds if self.seconds > 0 else math.nan


def train_epoch(
    *,
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    step_fn: StepFn,
    lr_at: Callable[[int], float],
    start_step: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    on_step_end: Callable[[], None] | None = None,
    max_steps: int | None = None,
    prepare: PrepareFn | None = None,
) -> EpochStats:
    """Train ``model`` for one pass over ``batches`` (or ``max_steps`` steps) and time it.

    Each batch goes to ``device`` and through ``prepare`` (augmentation on the device), then
    step s (global, counted from ``start_step``) sets the lr to ``lr_at(s)`` on every group not
    flagged ``fixed_lr``, computes ``step_fn(model, batch)`` under autocast (``amp_dtype``),
    back-propagates (through ``scaler`` when given, for float16) and steps the optimizer, then
    calls ``on_step_end`` (BYOL's EMA, the memory bank: pass ``unwrap_model(m).on_step_end``).
    The loss is read back every step, which synchronises the device once per step: the wall
    time blocked on ``batches`` is then the time the accelerator waited for data.

    Raises NonFiniteLossError on a NaN/inf loss and InputError when ``batches`` is empty.
    """
    model.train()
    losses: list[float] = []
    steps, images, wait, first_step_at, first_batch_at = 0, 0, 0.0, math.nan, math.nan
    iterator = iter(batches)
    start = time.perf_counter()
    while max_steps is None or steps < max_steps:
        before = time.perf_counter()
        batch = next(iterator, None)
        wait += time.perf_counter() - before
        if batch is None:
            break
        if steps == 0:
            first_batch_at = time.time()
        batch = _to_device(batch, device)
        if prepare is not None:
            batch = prepare(batch)
        step = start_step + steps
        lr = lr_at(step)
        set_lr(optimizer, lr)
        with autocast(device, amp_dtype):
            loss = step_fn(model, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at step {step} (lr {lr:.3g}): training diverged; "
                "lower the learning rate or check the inputs"
            )
        optimizer.zero_grad(set_to_none=True)
        _backward_and_step(loss, optimizer, scaler)
        if on_step_end is not None:
            on_step_end()
        losses.append(value)
        if steps == 0:
            first_step_at = time.time()
        steps += 1
        images += _batch_size(batch)
    seconds = time.perf_counter() - start
    if steps == 0:
        raise InputError("batches: the epoch produced no batch (fewer rows than one batch?)")
    return EpochStats(
        sum(losses) / steps, steps, images, seconds, wait, tuple(losses), first_step_at,
        first_batch_at,
    )  # fmt: skip


def two_view_inputs(augmenter: Augmenter) -> PrepareFn:
    """``prepare`` for SSL: uint8 ``image`` frames -> two augmented ``view1``/``view2`` (and
    ``index`` kept), on the frames' device."""

    def prepare(batch: Batch) -> Batch:
        view1, view2 = augmenter.two_views(batch["image"])
        return {"view1": view1, "view2": view2, "index": batch["index"]}

    return prepare


def augmented_inputs(augmenter: Augmenter) -> PrepareFn:
    """``prepare`` for fine-tuning: uint8 ``image`` frames -> one augmented view, ``label``."""

    def prepare(batch: Batch) -> Batch:
        return {"image": augmenter(batch["image"]), "label": batch["label"]}

    return prepare


def ssl_step(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The SSL loss ``model(view1, view2, index)`` of a batch of two augmented views."""
    _require(batch, ("view1", "view2"))
    loss: torch.Tensor = model(batch["view1"], batch["view2"], batch.get("index"))
    return loss


def fastap_step(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> StepFn:
    """A step function computing ``loss_fn(model(image), label)`` (FastAPLoss, or GatherLoss
    around it under DDP); ``model`` maps images to embeddings."""

    def step(model: nn.Module, batch: Batch) -> torch.Tensor:
        _require(batch, ("image", "label"))
        return loss_fn(model(batch["image"]), batch["label"])

    return step


@torch.no_grad()
def embed_batches(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device,
    *,
    embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp_dtype: torch.dtype | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every ``{"image", "label"?}`` batch with ``model`` in eval mode, without gradients.

    ``embed`` is the function to apply (default ``model`` itself; ``method.embed`` for the
    backbone features of an SSL method); ``transform`` maps the batch's images on the device
    first (the evaluation transform of uint8 frames); ``model`` is what is put in eval mode, and its
    previous train/eval mode is restored afterwards. Returns float32 (N, D) embeddings and
    int64 (N,) labels (-1 where a batch has no labels).
    """
    embed = embed if embed is not None else model
    was_training = model.training
    model.eval()
    vectors: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    try:
        for batch in batches:
            _require(batch, ("image",))
            images = batch["image"].to(device, non_blocking=True)
            if transform is not None:
                images = transform(images)
            with autocast(device, amp_dtype):
                out = embed(images)
            vectors.append(out.float().cpu().numpy())
            label = batch.get("label")
            n = images.shape[0]
            labels.append(np.full(n, -1) if label is None else np.asarray(label.cpu()))
    finally:
        model.train(was_training)
    if not vectors:
        raise InputError("batches: nothing to embed")
    return np.concatenate(vectors), np.concatenate(labels).astype(np.int64)


def retrieval_metrics(
    embeddings: np.ndarray,
    labels: np.ndarray,
    k: int = 10,
    positive_label: int | None = 1,
    distance: str = "cosine",
    distance_params: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Leave-one-out retrieval: ``map``, ``p@k``, ``lift@k``, ``num_queries``.

    Rows are L2-normalised and ranked by cosine similarity, or by ``-distance`` (any name of
    :mod:`echoseek.distances`, e.g. a SOART3 variant: :func:`~echoseek.distances.similarity_numpy`),
    then each item labelled ``positive_label`` (every labelled item when None) queries the
    others, itself ignored; relevant = same label
    (:func:`~echoseek.evaluation.ranking.leave_one_out_from_scores`). The protocol of
    :func:`echoseek.evaluation.retrieval.leave_one_out_metrics`, built from the layers below
    training only.
    """
    vectors = F.normalize(torch.from_numpy(np.asarray(embeddings, dtype=np.float32)), dim=1)
    x, y = vectors.numpy(), np.asarray(labels)
    by = "" if distance == "cosine" else distance
    queries = leave_one_out_queries(y, positive_label)
    scores = similarity_numpy(x[queries], x, by, **(distance_params or {}))
    return leave_one_out_from_scores(scores, y, queries, (k,))


def representation_metrics(embeddings: np.ndarray) -> dict[str, float]:
    """Collapse diagnostics: RankMe effective rank and the std of L2-normalised outputs.

    See :func:`echoseek.evaluation.ranking.rankme` (~1 collapsed, up to min(N, D)) and
    :func:`echoseek.evaluation.ranking.collapse_std` (≈ 1/√D spread, ≈ 0 collapsed).
    """
    return {"rankme": rankme(embeddings), "collapse_std": collapse_std(embeddings)}


def _backward_and_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def _to_device(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def _batch_size(batch: Batch) -> int:
    return next(int(v.shape[0]) for v in batch.values() if isinstance(v, torch.Tensor))


def _require(batch: Batch, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"batch: missing {missing} (has {sorted(batch)})")
