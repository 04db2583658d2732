"""Training inputs on Ray Data: decoded, augmented two-view batches built outside the step.

:func:`two_view_dataset` is one continuous stream over all training epochs: a work list of
(epoch, shard) pairs, ``epochs x shards`` items from the driver, mapped by CPU tasks that read the
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
:func:`eval_view` is the deterministic counterpart (``image``, ``label``) for validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from echoseek.data.augment import AugmentConfig, build_transform, eval_transform
from echoseek.data.dataset import (
    decode_png,
    iter_batches,
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


ROW_COLUMNS = ("id", "image", "label")  # what the two-view and eval transforms read of a row


def object_columns(rows: pa.Table | pa.RecordBatch) -> dict[str, np.ndarray]:
    """The :data:`ROW_COLUMNS` of Arrow rows as the numpy object arrays a Ray Data batch of
    numpy format holds (what :func:`two_view_batch` and :func:`eval_batch` take)."""
    return {name: np.array(rows.column(name).to_pylist(), dtype=object) for name in ROW_COLUMNS}


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
        table = pq.read_table(files[shard], columns=list(ROW_COLUMNS))
        order = np.random.default_rng([seed, epoch, shard]).permutation(table.num_rows)
        for start in range(0, table.num_rows, batch_size):
            picked = order[start : start + batch_size]
            cols = object_columns(table.take(picked))
            yield two_view_batch(cols, augment=augment, index=offsets[shard] + picked)


def two_view_dataset(
    path: str,
    augment: AugmentConfig,
    batch_size: int = 64,
    num_cpus: float = 1.0,
    epochs: int = 1,
    seed: int = 0,
    tasks: int | None = None,
) -> Any:
    """The lazy ``ray.data.Dataset`` of ``epochs`` passes of two-view training batches
    (``tasks``: at most this many map tasks at once; None lets Ray Data choose)."""
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
    # the work list comes from the driver (no read task: one worker process less to start)
    items = [{"id": i} for i in range(work)]
    return ray.data.from_items(items, override_num_blocks=min(work, MAX_WORK_BLOCKS)).map_batches(
        read,
        batch_size=1,
        batch_format="numpy",
        num_cpus=num_cpus,
        compute=ray.data.TaskPoolStrategy(size=tasks),
    )


def eval_view(
    path: str,
    augment: AugmentConfig,
    keep: frozenset[str] | None = None,
    limit: int | None = None,
) -> Any:
    """The evaluation view (``image``, ``label``) of the dataset at ``path``, transformed in
    this process and put in the object store as one ``ray.data.Dataset`` of Arrow blocks.

    What every epoch's RankMe probe and val mAP read. Built here, it starts no Ray task: a
    Ray Data pipeline would start a file-listing task of one whole CPU and map tasks whose
    processes import torch, 10-20 s on a 2-core laptop before the first epoch (BENCHMARKS.md).
    ``keep``: only these row ids (a held-out split); ``limit``: the first rows only.
    """
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    images, labels, rows = [], [], 0
    for batch in iter_batches(path, batch_size=64, columns=list(ROW_COLUMNS)):
        out = eval_batch(object_columns(batch), augment=augment, keep=keep)
        images.append(out["image"])
        labels.append(out["label"])
        rows += len(out["label"])
        if limit is not None and rows >= limit:
            break
    shape = (0, augment.in_channels, augment.size, augment.size)
    image = np.concatenate(images) if images else np.zeros(shape, np.float32)
    label = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    if limit is not None:
        image, label = image[:limit], label[:limit]
    table = pa.table({"image": ArrowTensorArray.from_numpy(image), "label": label})
    return ray.data.from_arrow(table)


def _labels(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), UNLABELLED, dtype=np.int64)
    for i, v in enumerate(values):
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            out[i] = int(v)
    return out
