"""The dataset artifact: Parquet shards of PNG-encoded images plus ``dataset.json``.

Layout (README.md, "Artifacts")::

    dataset/
      dataset.json        format_version, count, label counts, source, sha256, shards
      part-00000.parquet  rows {id, image (PNG bytes), height, width, channels,
      part-00001.parquet        label (nullable), source, frame_index (nullable)}

``sha256`` of the dataset is the SHA-256 of the concatenated hex digests of its shard files in
order, so it changes whenever any image, label or id changes. :class:`DatasetWriter` streams
rows into shards of ``shard_size`` rows inside a staging directory and publishes atomically.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from echoseek.errors import ConfigError, InputError
from echoseek.object_store import is_file, is_uri, join, member, parquet_file, read_bytes, sha256
from echoseek.storage import (
    combined_sha256,
    parse_json_document,
    read_json_document,
    sha256_file,
    staged_dir,
    verify_sha256,
    write_json_atomic,
)

if TYPE_CHECKING:
    import ray.data

FORMAT_VERSION = 1
DESCRIPTOR = "dataset.json"
ROW_GROUP_ROWS = 128  # small row groups: fine-tuning reads rows on demand (data/labelled.py)

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image", pa.binary()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("channels", pa.int8()),
        ("label", pa.int64()),
        ("source", pa.string()),
        ("frame_index", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Row:
    """One dataset row before encoding; ``image`` is (H, W) or (H, W, 3) uint8."""

    id: str
    image: np.ndarray
    source: str
    label: int | None = None
    frame_index: int | None = None


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of a (H, W) or (H, W, 3) uint8 array."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W[, 3]) array, got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_png`: a (H, W) or (H, W, 3) uint8 array."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


class DatasetWriter:
    """Stream :class:`Row` objects into a new dataset directory, published atomically.

    Use as a context manager; nothing appears at ``out_dir`` unless the block completes.
    """

    def __init__(
        self,
        out_dir: str | Path,
        source: dict[str, Any],
        shard_size: int = 1024,
        overwrite: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if shard_size <= 0:
            raise InputError(f"shard_size must be positive, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.source = source
        self.shard_size = shard_size
        self.extra = dict(extra or {})
        self._staged = staged_dir(self.out_dir, overwrite=overwrite)
        self._dir: Path | None = None
        self._buffer: list[dict[str, Any]] = []
        self._shards: list[dict[str, Any]] = []
        self._labels: Counter[int] = Counter()
        self._shapes: set[tuple[int, int, int]] = set()
        self._count = 0
        self._unlabelled = 0

    def __enter__(self) -> DatasetWriter:
        self._dir = self._staged.__enter__()
        return self

    def add(self, row: Row) -> None:
        """Buffer one row; a full buffer is written as the next shard."""
        self.add_encoded(self._encode(row))

    def add_encoded(self, record: dict[str, Any]) -> None:
        """Buffer one row already in :data:`SCHEMA` form (PNG bytes), as another dataset's
        shards hold it; a full buffer is written as the next shard."""
        self._shapes.add((int(record["height"]), int(record["width"]), int(record["channels"])))
        self._count += 1
        if record["label"] is None:
            self._unlabelled += 1
        else:
            self._labels[int(record["label"])] += 1
        self._buffer.append(record)
        if len(self._buffer) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        assert self._dir is not None, "DatasetWriter used outside its with-block"
        rows = self._buffer
        self._buffer = []
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        name = f"part-{len(self._shards):05d}.parquet"
        pq.write_table(table, self._dir / name, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        digest = sha256_file(self._dir / name)
        self._shards.append({"file": name, "rows": len(rows), "sha256": digest})

    @staticmethod
    def _encode(row: Row) -> dict[str, Any]:
        img = row.image
        return {
            "id": row.id,
            "image": encode_png(img),
            "height": int(img.shape[0]),
            "width": int(img.shape[1]),
            "channels": 1 if img.ndim == 2 else int(img.shape[2]),
            "label": row.label,
            "source": row.source,
            "frame_index": row.frame_index,
        }

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self._flush()
                if self._count == 0:
                    raise InputError(f"{self.source.get('path', 'input')}: no images to ingest")
                assert self._dir is not None
                write_json_atomic(self._dir / DESCRIPTOR, self.descriptor())
            except BaseException as err:
                self._staged.__exit__(type(err), err, err.__traceback__)
                raise
        self._staged.__exit__(exc_type, exc, tb)

    def descriptor(self) -> dict[str, Any]:
        """The ``dataset.json`` content for the rows written so far."""
        image = None
        if len(self._shapes) == 1:
            h, w, c = next(iter(self._shapes))
            image = {"height": h, "width": w, "channels": c}
        combined = combined_sha256([s["sha256"] for s in self._shards])
        return {
            "format": "echoseek.dataset",
            "format_version": FORMAT_VERSION,
            "count": self._count,
            "labelled": self._count - self._unlabelled,
            "label_counts": {str(k): v for k, v in sorted(self._labels.items())},
            "image": image,
            "source": self.source,
            "sha256": combined,
            "shards": self._shards,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.extra,
        }


def read_descriptor(path: str | Path) -> dict[str, Any]:
    """Load and validate ``dataset.json`` of a dataset directory or object-store prefix
    (``s3://…``; its shard list included)."""
    file = join(path, DESCRIPTOR)
    missing = f"not a dataset directory (no {DESCRIPTOR}; run echoseek ingest)"
    if not is_uri(path):
        desc = read_json_document(Path(file), "echoseek.dataset", FORMAT_VERSION, missing)
    elif not is_file(file):
        raise InputError(f"{path}: {missing}")
    else:
        desc = parse_json_document(read_bytes(file), file, "echoseek.dataset", FORMAT_VERSION)
    _check_shards(path, file, desc)
    return dict(desc)


def _check_shards(root: str | Path, file: str, desc: dict[str, Any]) -> None:
    """``shards``: a non-empty list of ``{file, rows, sha256}`` inside ``root``, adding up to
    ``count`` and to the dataset's ``sha256``."""
    shards = desc.get("shards")
    if not isinstance(shards, list) or not shards:
        raise InputError(f"{file}: 'shards' must be a non-empty list, got {shards!r:.60}")
    for i, shard in enumerate(shards):
        where = f"{file} shards[{i}]"
        if not isinstance(shard, dict):
            raise InputError(f"{where}: expected an object {{file, rows, sha256}}")
        member(root, shard.get("file"), f"{where}.file")
        rows = shard.get("rows")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise InputError(f"{where}.rows: expected a row count, got {rows!r}")
        if not isinstance(shard.get("sha256"), str):
            raise InputError(f"{where}.sha256: expected a hex digest, got {shard.get('sha256')!r}")
    count, rows = desc.get("count"), sum(s["rows"] for s in shards)
    if count != rows or isinstance(count, bool):
        raise InputError(f"{file}: 'count' is {count!r} but the shards hold {rows} rows")
    if desc.get("sha256") != combined_sha256([s["sha256"] for s in shards]):
        raise InputError(f"{file}: 'sha256' does not match the shards' checksums")


def shard_paths(path: str | Path) -> list[str]:
    """The Parquet shard files of a dataset (paths, or URIs in a store), in order, checked to
    exist and to match the checksums ``dataset.json`` lists (on a filesystem, hashed once per
    process while unchanged)."""
    desc = read_descriptor(path)
    where = join(path, DESCRIPTOR)
    files = []
    for i, shard in enumerate(desc["shards"]):
        file = member(path, shard["file"], f"{where} shards[{i}].file")
        if not is_file(file):
            raise InputError(f"{file}: shard listed in {DESCRIPTOR} is missing")
        if not is_uri(file):
            verify_sha256(Path(file), shard["sha256"], DESCRIPTOR)
        elif sha256(file) != shard["sha256"]:
            raise InputError(f"{file}: checksum mismatch with {DESCRIPTOR} (corrupt or modified)")
        files.append(file)
    return files


def validation_descriptor(val: str, train: dict[str, Any], hint: str) -> dict[str, Any]:
    """The descriptor of ``val``, a labelled dataset held out from ``train`` (another
    descriptor): its shards verified, and refused if it is the training input itself (same
    sha256). ``hint`` ends that message with what to do instead."""
    desc = read_descriptor(val)
    shard_paths(val)
    if not desc.get("labelled"):
        raise ConfigError(f"val: {val} has no labels")
    if len(desc.get("label_counts") or {}) < 2:
        raise ConfigError(f"val: {val} needs labels of at least two classes")
    if desc.get("sha256") == train.get("sha256"):
        raise ConfigError(f"val: {val} is the training input itself (same sha256); {hint}")
    return desc


def iter_batches(
    path: str | Path, batch_size: int = 256, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream record batches of a dataset with pyarrow (no Ray), in row order."""
    for file in shard_paths(path):
        yield from parquet_file(file).iter_batches(batch_size=batch_size, columns=columns)


def labelled_ids(path: str | Path) -> tuple[list[str], list[int]]:
    """Ids and labels of the labelled rows, in row order (reads only those two columns)."""
    ids: list[str] = []
    labels: list[int] = []
    for batch in iter_batches(path, columns=["id", "label"]):
        for item, label in zip(
            batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True
        ):
            if label is not None:
                ids.append(str(item))
                labels.append(int(label))
    return ids, labels


def read_dataset(path: str | Path) -> ray.data.Dataset:
    """A lazy ``ray.data.Dataset`` over the dataset's shards (rows as in :data:`SCHEMA`)."""
    import ray.data

    files = [str(f) for f in shard_paths(path)]
    return ray.data.read_parquet(files, schema=SCHEMA)
