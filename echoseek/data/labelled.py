"""Fine-tuning input that streams: a labels-only index, and images read from Parquet on demand.

FastAP needs positives in every batch, so batches are index lists drawn by
:class:`echoseek.data.samplers.MPerClassBatchSampler`, which needs random access to the labelled
rows. No worker loads the set up front: :class:`LabelIndex` keeps only where each labelled row
is stored (shard, row) and its label (a few bytes per row); :class:`RowReader` reads the PNG
bytes of the rows a batch names from their Parquet row groups (datasets are written in row
groups of :data:`~echoseek.data.dataset.ROW_GROUP_ROWS` rows), keeping a bounded cache of them;
:class:`LabelledFrames` decodes them to uint8 frames with the same decode path as pretraining
(:func:`echoseek.data.frames.decode_frames`) and keeps the decoded frames, up to a budget, so
each row is decoded once per worker rather than once per epoch; :func:`decoded_batches` prepares
the batches in background threads, a few ahead; the worker augments them on its device.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
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


ROW_CACHE_BYTES = 1 << 30  # image bytes a RowReader keeps: a labelled set of ~20k 48 kB frames


class RowReader:
    """Reads the image bytes of chosen rows from Parquet shards; safe to use from several threads.

    Parquet's unit of reading is a row group's column chunk, so a random batch of an m-per-class
    sampler touches nearly every row group of a small set: read for each batch, that is the
    whole image column per batch (8192 frames of 48 kB: 400 MB per batch of 256). The image
    columns read are kept, up to ``cache_bytes`` (least recently used out first), so a set that
    fits is read once per worker and every later batch only slices memory.
    """

    def __init__(self, files: list[str], cache_bytes: int = ROW_CACHE_BYTES) -> None:
        self.files = files
        self.cache_bytes = cache_bytes
        self._groups: OrderedDict[tuple[int, int], pa.Array] = OrderedDict()
        self._held = 0
        self._starts: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # a thread's open ParquetFiles

    def _file(self, shard: int) -> pq.ParquetFile:
        files = self._local.__dict__.setdefault("files", {})
        if shard not in files:
            files[shard] = pq.ParquetFile(self.files[shard])
        return files[shard]

    def _group_starts(self, shard: int) -> np.ndarray:
        """First row of each row group of ``shard``, and its row count last."""
        if shard not in self._starts:
            meta = self._file(shard).metadata
            sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            self._starts[shard] = np.concatenate([[0], np.cumsum(sizes)])
        return self._starts[shard]

    def _column(self, shard: int, group: int) -> pa.Array:
        """The image column of one row group, from memory when it was read before."""
        key = (shard, group)
        with self._lock:
            if key in self._groups:
                self._groups.move_to_end(key)
                return self._groups[key]
        column = self._file(shard).read_row_group(group, columns=["image"]).column(0)
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        with self._lock:
            if key not in self._groups and column.nbytes <= self.cache_bytes:
                self._groups[key] = column
                self._held += column.nbytes
                while self._held > self.cache_bytes:
                    _, dropped = self._groups.popitem(last=False)
                    self._held -= dropped.nbytes
        return column

    def images(self, shard: np.ndarray, row: np.ndarray) -> list[bytes]:
        """PNG bytes of rows ``row[i]`` of shards ``shard[i]``, in the order given."""
        out: list[bytes] = [b""] * len(row)
        for s in np.unique(shard):
            starts = self._group_starts(int(s))
            where = np.flatnonzero(shard == s)
            groups = np.searchsorted(starts, row[where], side="right") - 1
            for g in np.unique(groups):
                column = self._column(int(s), int(g))
                for i in where[groups == g]:
                    out[i] = column[int(row[i] - starts[g])].as_py()
        return out

    def clear(self) -> None:
        """Drop the kept image columns (when nothing will read them again)."""
        with self._lock:
            self._groups.clear()
            self._held = 0


FRAME_CACHE_BYTES = 2 << 30  # decoded frames a fine-tuning worker keeps: 32k 256 x 256 gray


class LabelledFrames:
    """The uint8 frames of a :class:`LabelIndex`'s rows, decoded on first use and kept.

    An m-per-class sampler visits every row each epoch in a new order, so decoding again (PNG:
    about 1 ms per 256 x 256 frame and core) is repeated work from the second epoch on; on an
    H200 the fine-tune's GPU waited 59 % of the time on it. The first
    ``cache_bytes // frame bytes`` rows of the index stay decoded (every row, for a set that
    fits), the rest are decoded from the reader's bytes for each batch. Once every row is kept,
    the reader's byte cache is dropped. Safe for several decode threads: two of them may decode
    the same row at once, and both write the same frame.
    """

    def __init__(
        self,
        index: LabelIndex,
        channels: int,
        shape: tuple[int, int],
        cache_bytes: int = FRAME_CACHE_BYTES,
        reader: RowReader | None = None,
    ) -> None:
        self.index = index
        self.channels, self.shape = channels, shape
        self.reader = reader if reader is not None else RowReader(index.files)
        self.kept = min(len(index), cache_bytes // (channels * shape[0] * shape[1]))
        self._frames = np.empty((self.kept, channels, *shape), dtype=np.uint8)  # pages on write
        self._decoded = np.zeros(self.kept, dtype=bool)

    def batch(self, picks: np.ndarray) -> dict[str, torch.Tensor]:
        """Rows ``picks`` of the index: ``{"image": NxCxHxW uint8, "label": N int64}``."""
        picks = np.asarray(picks, dtype=np.int64)
        hit = picks < self.kept
        hit[hit] = self._decoded[picks[hit]]
        frames = np.empty((len(picks), self.channels, *self.shape), dtype=np.uint8)
        frames[hit] = self._frames[picks[hit]]
        if not hit.all():
            rows = picks[~hit]
            data = self.reader.images(self.index.shard[rows], self.index.row[rows])
            decoded = decode_frames(data, self.channels, self.shape)
            frames[~hit] = decoded
            keep = rows < self.kept
            self._frames[rows[keep]] = decoded[keep]
            self._decoded[rows[keep]] = True  # after the frames: a reader seeing True finds them
            if keep.any() and self.kept == len(self.index) and self._decoded.all():
                self.reader.clear()
        labels = torch.from_numpy(self.index.labels[picks])
        return {"image": torch.from_numpy(frames), "label": labels}


def decoded_batches(
    frames: LabelledFrames,
    index_batches: Iterable[list[int]],
    ahead: int = 2,
    pin: bool = False,
    threads: int = 1,
) -> Iterator[dict[str, Any]]:
    """Yield ``frames.batch(...)`` for each index batch, in order, prepared by ``threads``
    background threads up to ``ahead + threads`` batches early (in pinned memory with ``pin``,
    for non-blocking copies to a GPU). PIL and zlib release the GIL while they decode, so the
    threads decode on as many cores. An exception in a thread is re-raised here."""

    def load(picks: list[int]) -> dict[str, Any]:
        batch = frames.batch(np.asarray(picks))
        return {k: v.pin_memory() for k, v in batch.items()} if pin else batch

    workers = max(1, threads)
    pending: deque[Future[dict[str, Any]]] = deque()
    todo = iter(index_batches)
    with ThreadPoolExecutor(workers, thread_name_prefix="echoseek-decode") as pool:
        try:
            pending.extend(pool.submit(load, p) for p in islice(todo, max(1, ahead) + workers))
            while pending:
                batch = pending.popleft().result()
                pending.extend(pool.submit(load, p) for p in islice(todo, 1))
                yield batch
        finally:
            for future in pending:
                future.cancel()
