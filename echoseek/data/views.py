"""Training inputs on Ray Data: decoded, augmented two-view batches built outside the step.

``read_dataset(path)`` streams the dataset's Parquet rows; :func:`two_view_dataset` adds a
``map_batches`` stage (CPU tasks) that decodes each PNG once and draws two independent
augmentations of it (:func:`echoseek.data.augment.build_transform`), so a Ray Train worker's
``get_dataset_shard("train").iter_torch_batches(...)`` yields ready tensors:

    view1, view2   float32 NxCxSxS   two augmented views of the same images
    index          int64   N         dense row number (0..count-1) for memory-bank methods
    label          int64   N         label, -1 where unlabelled

Ray Data re-runs the stage every epoch, so every epoch sees fresh augmentations. Randomness
comes from each task's torch generator (not seeded: Ray schedules tasks in any order).
:func:`eval_dataset` is the deterministic counterpart (``image``, ``label``) for validation.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from echoseek.data.augment import AugmentConfig, build_transform, eval_transform
from echoseek.data.dataset import decode_png, iter_batches, read_dataset
from echoseek.embedding import to_chw

UNLABELLED = -1


def row_numbers(path: str) -> dict[str, int]:
    """Dense row number of every id, in the dataset's stored order (reads the id column)."""
    ids: list[str] = []
    for batch in iter_batches(path, columns=["id"]):
        ids += [str(i) for i in batch.column(0).to_pylist()]
    return {item: row for row, item in enumerate(ids)}


def two_view_batch(
    batch: dict[str, np.ndarray], *, augment: AugmentConfig, rows: dict[str, int]
) -> dict[str, np.ndarray]:
    """Ray Data batch (numpy format) → two augmented views per image, dense index, label."""
    transform = build_transform(augment)
    view1, view2 = [], []
    for data in batch["image"]:
        image = to_chw(decode_png(data), augment.in_channels)  # CxHxW uint8
        view1.append(transform(image))
        view2.append(transform(image))
    return {
        "view1": torch.stack(view1).numpy(),  # NxCxSxS
        "view2": torch.stack(view2).numpy(),
        "index": np.array([rows[str(i)] for i in batch["id"]], dtype=np.int64),
        "label": _labels(batch["label"]),
    }


def eval_batch(batch: dict[str, np.ndarray], *, augment: AugmentConfig) -> dict[str, np.ndarray]:
    """Ray Data batch → deterministic model input (resize, scale, normalise) and label."""
    transform = eval_transform(augment)
    images = [transform(to_chw(decode_png(d), augment.in_channels)) for d in batch["image"]]
    return {"image": torch.stack(images).numpy(), "label": _labels(batch["label"])}


def two_view_dataset(
    path: str, augment: AugmentConfig, batch_size: int = 64, num_cpus: float = 1.0
) -> Any:
    """The lazy ``ray.data.Dataset`` of two-view training batches of the dataset at ``path``."""
    return read_dataset(path).map_batches(
        partial(two_view_batch, augment=augment, rows=row_numbers(path)),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
    )


def eval_dataset(
    path: str, augment: AugmentConfig, batch_size: int = 64, num_cpus: float = 1.0
) -> Any:
    """The lazy ``ray.data.Dataset`` of evaluation batches of the dataset at ``path``."""
    return read_dataset(path).map_batches(
        partial(eval_batch, augment=augment),
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
    )


def _labels(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), UNLABELLED, dtype=np.int64)
    for i, v in enumerate(values):
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            out[i] = int(v)
    return out
