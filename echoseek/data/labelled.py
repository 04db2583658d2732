"""Fine-tuning input that streams: a labels-only index, and images read from Parquet on demand.

FastAP needs positives in every batch, so batches are index lists drawn by
:class:`echoseek.data.samplers.MPerClassBatchSampler`, which needs random access to the labelled
rows. No worker holds the images: :class:`LabelIndex` keeps only where each labelled row is
stored (shard, row) and its label (a few bytes per row); :class:`RowReader` reads the PNG bytes
of the rows a batch names from their Parquet row groups (datasets are written in row groups of
:data:`~echoseek.data.dataset.ROW_GROUP_ROWS` rows); :func:`decoded_batches` reads and decodes
each batch to uint8 frames in a background thread, a few batches ahead, with the same decode path
as pretraining (:func:`echoseek.data.frames.decode_frames`); the worker augments them on its
device.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from echoseek.data.dataset import shard_paths
from echoseek.data.frames import decode_frames
from echoseek.errors import InputError


@dataclass
class LabelIndex:
    """The labelled rows of a dataset without their images: storage position and label."""

    files: list[str]  # the dataset's Parquet shards
    shard: np.ndarray  # int32 (N,): shard of each row
    row: np.ndarray  # int64 (N,): row inside its shard
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


def label_index(path: str | Path, keep: Collection[str] | None = None) -> LabelIndex:
    """The :class:`LabelIndex` of the labelled rows of the dataset at ``path`` (reads only the
    ``id`` and ``label`` columns); ``keep``: only rows whose id is in it (a training split)."""
    files = [str(f) for f in shard_paths(path)]
    shards: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for s, file in enumerate(files):
        table = pq.read_table(file, columns=["id", "label"])
        label = table.column("label").to_numpy(zero_copy_only=False)
        mask = ~table.column("label").is_null().to_numpy(zero_copy_only=False)
        if keep is not None:
            ids = table.column("id").to_pylist()
            mask &= np.fromiter((i in keep for i in ids), dtype=bool, count=len(ids))
        picked = np.flatnonzero(mask)
        shards.append(np.full(len(picked), s, dtype=np.int32))
        rows.append(picked.astype(np.int64))
        labels.append(np.asarray(label[picked], dtype=np.int64))
    index = LabelIndex(files, np.concatenate(shards), np.concatenate(rows), np.concatenate(labels))
    if not len(index):
        raise InputError(f"{path}: the fine-tuning dataset has no labelled rows")
    return index


class RowReader:
    """Reads the image bytes of chosen rows from Parquet shards, one row group at a time."""

    def __init__(self, files: list[str]) -> None:
        self.files = files
        self._open: dict[int, tuple[pq.ParquetFile, np.ndarray]] = {}

    def _shard(self, shard: int) -> tuple[pq.ParquetFile, np.ndarray]:
        if shard not in self._open:
            pf = pq.ParquetFile(self.files[shard])
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
            self._open[shard] = pf, np.concatenate([[0], np.cumsum(sizes)])
        return self._open[shard]

    def images(self, shard: np.ndarray, row: np.ndarray) -> list[bytes]:
        """PNG bytes of rows ``row[i]`` of shards ``shard[i]``, in the order given."""
        out: list[bytes] = [b""] * len(row)
        for s in np.unique(shard):
            pf, starts = self._shard(int(s))
            where = np.flatnonzero(shard == s)
            groups = np.searchsorted(starts, row[where], side="right") - 1
            for g in np.unique(groups):
                column = pf.read_row_group(int(g), columns=["image"]).column(0)
                for i in where[groups == g]:
                    out[i] = column[int(row[i] - starts[g])].as_py()
        return out

    def batch(
        self, index: LabelIndex, picks: np.ndarray, channels: int, shape: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """Rows ``picks`` of ``index`` as uint8 frames: ``{"image": NxCxHxW, "label": N}``."""
        data = self.images(index.shard[picks], index.row[picks])
        frames = decode_frames(data, channels, shape)
        return {"image": torch.from_numpy(frames), "label": torch.from_numpy(index.labels[picks])}


def decoded_batches(
    reader: RowReader,
    index: LabelIndex,
    index_batches: Iterable[list[int]],
    channels: int,
    shape: tuple[int, int],
    ahead: int = 2,
    pin: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield ``reader.batch(...)`` for each index batch, prepared ``ahead`` batches early in a
    background thread (in pinned memory with ``pin``, for non-blocking copies to a GPU). An
    exception in the thread is re-raised here."""
    done = object()
    slots: queue.Queue[Any] = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def produce() -> None:
        try:
            for picks in index_batches:
                if stop.is_set():
                    return
                batch = reader.batch(index, np.asarray(picks), channels, shape)
                slots.put({k: v.pin_memory() for k, v in batch.items()} if pin else batch)
            slots.put(done)
        except BaseException as exc:  # handed to the consumer
            slots.put(exc)

    worker = threading.Thread(target=produce, name="echoseek-decode", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not slots.empty():  # unblock a producer waiting on a full queue
            slots.get_nowait()
        worker.join(timeout=5)
