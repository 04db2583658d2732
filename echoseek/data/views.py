"""Training inputs on Ray Data: decoded, augmented two-view batches built outside the step.

:func:`two_view_dataset` is one continuous stream over all training epochs: a work list of
(epoch, shard) pairs, ``ray.data.range(epochs x shards)``, mapped by CPU tasks that read the
shard's Parquet rows, decode each PNG once and draw two independent augmentations of it
(:func:`echoseek.data.augment.build_transform`). A Ray Train worker iterates
``get_dataset_shard("train").iter_torch_batches(...)`` once and counts epochs in steps, so
no pipeline restarts between epochs (a restart cost ~3 s of idle step per epoch on a laptop,
see BENCHMARKS.md) and the next epoch's batches are prepared while rank 0 validates. Batches
hold ready tensors:

    view1, view2   float32 NxCxSxS   two augmented views of the same images
    index          int64   N         dense row number (0..count-1) for memory-bank methods
    label          int64   N         label, -1 where unlabelled

Order: each epoch visits the shards in its own permutation and each shard's rows in their own
permutation, both seeded by ``(seed, epoch, ...)``; the passes meet at a step boundary, not a
block boundary, so a batch may straddle two passes. Augmentations are fresh every pass and
come from each task's torch generator (not seeded: Ray schedules tasks in any order).
:func:`eval_dataset` is the deterministic counterpart (``image``, ``label``) for validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from echoseek.data.augment import AugmentConfig, build_transform, eval_transform
from echoseek.data.dataset import (
    decode_png,
    iter_batches,
    read_dataset,
    read_descriptor,
    shard_paths,
)
from echoseek.embedding import to_chw

UNLABELLED = -1
MAX_WORK_BLOCKS = 4096  # blocks of the (epoch, shard) work list; more items share a block


def row_numbers(path: str) -> dict[str, int]:
    """Dense row number of every id, in the dataset's stored order (reads the id column)."""
    ids: list[str] = []
    for batch in iter_batches(path, columns=["id"]):
        ids += [str(i) for i in batch.column(0).to_pylist()]
    return {item: row for row, item in enumerate(ids)}


def shard_offsets(path: str) -> list[int]:
    """Rows stored before each shard (from the descriptor): shard i's first dense row number."""
    counts = [int(shard["rows"]) for shard in read_descriptor(path)["shards"]]
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()


def decode_chw(data: bytes, channels: int) -> torch.Tensor:
    """Stored PNG bytes -> a CxHxW uint8 tensor with ``channels`` channels (every training and
    evaluation input goes through this before its transform)."""
    return to_chw(decode_png(data), channels)


def two_view_batch(
    batch: dict[str, np.ndarray], *, augment: AugmentConfig, index: np.ndarray
) -> dict[str, np.ndarray]:
    """Ray Data batch (numpy format) → two augmented views per image, ``index``, label."""
    transform = build_transform(augment)
    view1, view2 = [], []
    for data in batch["image"]:
        image = decode_chw(data, augment.in_channels)  # CxHxW uint8
        view1.append(transform(image))
        view2.append(transform(image))
    return {
        "view1": torch.stack(view1).numpy(),  # NxCxSxS
        "view2": torch.stack(view2).numpy(),
        "index": np.asarray(index, dtype=np.int64),
        "label": _labels(batch["label"]),
    }


def eval_batch(
    batch: dict[str, np.ndarray], *, augment: AugmentConfig, keep: frozenset[str] | None = None
) -> dict[str, np.ndarray]:
    """Ray Data batch → deterministic model input (resize, scale, normalise) and label; with
    ``keep``, only the rows whose id is in it (a held-out split)."""
    if keep is not None:
        mask = np.fromiter((str(i) in keep for i in batch["id"]), bool, len(batch["id"]))
        batch = {"image": batch["image"][mask], "label": batch["label"][mask]}
    transform = eval_transform(augment)
    images = [transform(decode_chw(d, augment.in_channels)) for d in batch["image"]]
    shape = (0, augment.in_channels, augment.size, augment.size)
    stacked = torch.stack(images).numpy() if images else np.zeros(shape, np.float32)
    return {"image": stacked, "label": _labels(batch["label"])}


def pass_order(shards: int, epoch: int, seed: int) -> np.ndarray:
    """The shard order of pass ``epoch``: a permutation seeded by ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(shards)


def two_view_shards(
    work: dict[str, np.ndarray],
    *,
    files: list[str],
    seed: int,
    augment: AugmentConfig,
    offsets: list[int],
    batch_size: int,
) -> Iterator[dict[str, np.ndarray]]:
    """Work items (``id`` = epoch x shards + slot) → two-view batches of ``batch_size`` rows.

    Reads the shard at ``slot`` of the epoch's :func:`pass_order`, shuffles its rows with a
    generator seeded by ``(seed, epoch, shard)`` and yields them augmented, batch by batch
    (a shard may hold far more rows than one output block should). A row's dense index is
    its shard's ``offsets`` entry (rows stored before it) plus its position in the shard, the
    same number :func:`row_numbers` gives its id.
    """
    for item in work["id"]:
        epoch, slot = divmod(int(item), len(files))
        shard = int(pass_order(len(files), epoch, seed)[slot])
        table = pq.read_table(files[shard], columns=["id", "image", "label"])
        order = np.random.default_rng([seed, epoch, shard]).permutation(table.num_rows)
        for start in range(0, table.num_rows, batch_size):
            picked = order[start : start + batch_size]
            part = table.take(picked)
            cols = {name: np.array(part.column(name).to_pylist(), dtype=object)
                    for name in ("id", "image", "label")}  # fmt: skip
            yield two_view_batch(cols, augment=augment, index=offsets[shard] + picked)


def two_view_dataset(
    path: str,
    augment: AugmentConfig,
    batch_size: int = 64,
    num_cpus: float = 1.0,
    epochs: int = 1,
    seed: int = 0,
) -> Any:
    """The lazy ``ray.data.Dataset`` of ``epochs`` passes of two-view training batches."""
    import ray.data

    files = [str(f) for f in shard_paths(path)]
    work = len(files) * epochs
    read = partial(
        two_view_shards,
        files=files,
        seed=seed,
        augment=augment,
        offsets=shard_offsets(path),
        batch_size=batch_size,
    )
    return ray.data.range(work, override_num_blocks=min(work, MAX_WORK_BLOCKS)).map_batches(
        read,
        batch_size=1,
        batch_format="numpy",
        num_cpus=num_cpus,
    )


def eval_dataset(
    path: str,
    augment: AugmentConfig,
    batch_size: int = 64,
    num_cpus: float = 1.0,
    keep: frozenset[str] | None = None,
) -> Any:
    """The lazy ``ray.data.Dataset`` of evaluation batches of the dataset at ``path``
    (``keep``: only these row ids)."""
    return read_dataset(path).map_batches(
        partial(eval_batch, augment=augment, keep=keep),
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
