"""Training inputs on Ray Data: shuffled, decoded uint8 frames; augmentation happens later.

:func:`frame_dataset` is one continuous stream over all training epochs: a work list of
(epoch, shard) pairs, ``epochs x shards`` items from the driver, mapped by CPU tasks that read the
shard's Parquet rows and decode each PNG once (:func:`echoseek.data.frames.decode_frames`). The
Train worker moves each uint8 batch to its device and augments it there, the whole batch at once
(:class:`echoseek.data.augment.Augmenter`: two views for pretraining), so the CPU tasks only read
and decode. A Ray Train worker iterates ``get_dataset_shard("train").iter_torch_batches(...)``
once and counts epochs in steps, so no pipeline restarts between epochs (a restart cost ~3 s of
idle step per epoch on a laptop, see BENCHMARKS.md) and the next epoch's batches are prepared
while rank 0 validates. Batches hold:

    image   uint8   NxCxHxW  frames at the dataset's frame shape (data/frames.py)
    index   int64   N        dense row number (0..count-1) for memory-bank methods
    label   int64   N        label, -1 where unlabelled

Order: each epoch visits the shards in its own permutation and each shard's rows in their own
permutation, both seeded by ``(seed, epoch, ...)``; the passes meet at a step boundary, not a
block boundary, so a batch may straddle two passes. :func:`eval_view` holds the frames of a
validation set (``image``, ``label``) for the worker's evaluation transform.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echoseek.data.dataset import iter_batches, read_descriptor, shard_paths
from echoseek.data.frames import decode_frames, frame_shape

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


def frame_batch(
    batch: dict[str, np.ndarray],
    *,
    channels: int,
    shape: tuple[int, int],
    index: np.ndarray | None = None,
    keep: frozenset[str] | None = None,
) -> dict[str, np.ndarray]:
    """Ray Data batch (numpy format) -> uint8 ``image`` frames, ``label`` and (given) ``index``;
    with ``keep``, only the rows whose id is in it (a held-out split)."""
    if keep is not None:
        mask = np.fromiter((str(i) in keep for i in batch["id"]), bool, len(batch["id"]))
        batch = {"image": batch["image"][mask], "label": batch["label"][mask]}
        index = None if index is None else np.asarray(index)[mask]
    out = {
        "image": decode_frames(list(batch["image"]), channels, shape),  # NxCxHxW uint8
        "label": _labels(batch["label"]),
    }
    if index is not None:
        out["index"] = np.asarray(index, dtype=np.int64)
    return out


ROW_COLUMNS = ("id", "image", "label")  # what the two-view and eval transforms read of a row


def object_columns(rows: pa.Table | pa.RecordBatch) -> dict[str, np.ndarray]:
    """The :data:`ROW_COLUMNS` of Arrow rows as the numpy object arrays a Ray Data batch of
    numpy format holds (what :func:`frame_batch` takes)."""
    return {name: np.array(rows.column(name).to_pylist(), dtype=object) for name in ROW_COLUMNS}


def pass_order(shards: int, epoch: int, seed: int) -> np.ndarray:
    """The shard order of pass ``epoch``: a permutation seeded by ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(shards)


def frame_shards(
    work: dict[str, np.ndarray],
    *,
    files: list[str],
    seed: int,
    channels: int,
    shape: tuple[int, int],
    offsets: list[int],
    batch_size: int,
) -> Iterator[dict[str, np.ndarray]]:
    """Work items (``id`` = epoch x shards + slot) -> frame batches of ``batch_size`` rows.

    Reads the shard at ``slot`` of the epoch's :func:`pass_order`, shuffles its rows with a
    generator seeded by ``(seed, epoch, shard)`` and yields them decoded, batch by batch
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
            yield frame_batch(cols, channels=channels, shape=shape, index=offsets[shard] + picked)


def frame_dataset(
    path: str,
    channels: int,
    size: int,
    batch_size: int = 64,
    num_cpus: float = 1.0,
    epochs: int = 1,
    seed: int = 0,
    tasks: int | None = None,
) -> Any:
    """The lazy ``ray.data.Dataset`` of ``epochs`` shuffled passes of uint8 training frames
    (``size``: the model's input side, which sets the frame shape of a mixed-size dataset;
    ``tasks``: at most this many map tasks at once; None lets Ray Data choose)."""
    import ray.data

    files = [str(f) for f in shard_paths(path)]
    work = len(files) * epochs
    read = partial(
        frame_shards,
        files=files,
        seed=seed,
        channels=channels,
        shape=frame_shape(read_descriptor(path), size),
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
    channels: int,
    size: int,
    keep: frozenset[str] | None = None,
    limit: int | None = None,
) -> Any:
    """The evaluation frames (uint8 ``image``, ``label``) of the dataset at ``path``, decoded
    in this process and put in the object store as one ``ray.data.Dataset`` of Arrow blocks.

    What every epoch's RankMe probe and val mAP read (the worker applies
    :func:`echoseek.data.augment.eval_transform` on its device). Built here, it starts no Ray
    task: a Ray Data pipeline would start a file-listing task of one whole CPU and map tasks
    whose processes import torch, 10-20 s on a 2-core laptop before the first epoch
    (BENCHMARKS.md). ``keep``: only these row ids (a held-out split); ``limit``: the first rows.
    """
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    shape = frame_shape(read_descriptor(path), size)
    images, labels, rows = [], [], 0
    for batch in iter_batches(path, batch_size=64, columns=list(ROW_COLUMNS)):
        out = frame_batch(object_columns(batch), channels=channels, shape=shape, keep=keep)
        images.append(out["image"])
        labels.append(out["label"])
        rows += len(out["label"])
        if limit is not None and rows >= limit:
            break
    image = np.concatenate(images) if images else np.zeros((0, channels, *shape), np.uint8)
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
