"""The vectors artifact, and streaming reads of every vector input ``index build`` accepts.

Layout (README.md, "Artifacts")::

    vectors/
      vectors.json        format, format_version, model_uri, dim, dtype, count, created,
                          files [{file, rows, sha256}], sha256 (+ extra, e.g. dataset_sha256)
      part-00000.parquet  rows {id: string, vector: fixed_size_list<float32>[dim]}
      part-00001.parquet        (+ optional label: int64, source: string, frame_index: int64)

:func:`write_vectors` streams batches into a staging directory and renames it into place.
:func:`iter_vector_batches` streams ``(ids, float32 N×dim array, metadata)`` batches from a
vectors artifact, a plain ``.npy`` file (memory-mapped; ids are row numbers) or a folder of
``.npy``/``.parquet`` files (ids are global row numbers when a file has no ``id`` column), as
autofaiss does, optionally restricted to a global row range so that shard tasks read only their
slice. Every batch is checked: a wrong dimension, a null or a NaN/inf value raises
:class:`~echoseek.errors.InputError` naming the file and row.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echoseek.data.npy import load_npy
from echoseek.errors import InputError
from echoseek.object_store import (
    basename,
    exists,
    is_file,
    is_uri,
    join,
    list_files,
    member,
    parquet_file,
    read_bytes,
    write_bytes,
    writing,
)
from echoseek.storage import (
    combined_sha256,
    parse_json_document,
    read_json_document,
    sha256_file,
    staged_dir,
)

FORMAT = "echoseek.vectors"
FORMAT_VERSION = 1
DESCRIPTOR = "vectors.json"
VECTOR_COLUMNS = ("vector", "embedding")
METADATA_TYPES: dict[str, pa.DataType] = {
    "label": pa.int64(),
    "source": pa.string(),
    "frame_index": pa.int64(),
}
ROWS_PER_FILE = 1 << 18
ROWS_PER_GROUP = 1 << 15


class VectorBatch(NamedTuple):
    """One streamed batch: external ids, an N×dim float32 array and metadata columns."""

    ids: list[str]
    vectors: np.ndarray
    metadata: dict[str, list[Any]]


@dataclass(frozen=True)
class VectorFile:
    """One input file and the global row number of its first row."""

    path: str
    kind: Literal["npy", "parquet"]
    rows: int
    offset: int
    column: str = "vector"
    has_ids: bool = False


@dataclass(frozen=True)
class VectorSource:
    """An opened vector input: its files in row order, dimension and row count."""

    path: str
    files: tuple[VectorFile, ...]
    dim: int
    count: int
    model_uri: str = ""
    sha256: str = ""
    descriptor: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def has_ids(self) -> bool:
        """Whether every file carries an ``id`` column (else ids are row numbers)."""
        return all(f.has_ids for f in self.files)


def open_vectors(path: str | Path) -> VectorSource:
    """Inspect a vector input (artifact dir, ``.npy`` file or folder) without reading vectors.

    ``path`` may be an object-store URI (``s3://bucket/vectors``) of an artifact, a folder of
    Parquet files or one Parquet file; every reader (tasks on any node) reads its row groups
    with ranged reads (:mod:`echoseek.object_store`)."""
    p = str(path) if is_uri(path) else Path(path)
    if not exists(p):
        raise InputError(f"{p}: vector input not found")
    if is_file(p):
        files = [_inspect_file(str(p), 0)]
        desc: dict[str, Any] = {}
    elif is_file(join(p, DESCRIPTOR)):
        desc = read_descriptor(p)
        files = _artifact_files(p, desc)
    else:
        files = _folder_files(p)
        desc = {}
    dims = {f.path: _file_dim(f) for f in files}
    _check_same_dim(dims, desc.get("dim"))
    count = sum(f.rows for f in files)
    if count == 0:
        raise InputError(f"{p}: no vectors (every input file is empty)")
    return VectorSource(
        path=str(p),
        files=tuple(files),
        dim=next(iter(dims.values())),
        count=count,
        model_uri=str(desc.get("model_uri", "")),
        sha256=str(desc.get("sha256", "")),
        descriptor=desc,
    )


def iter_vector_batches(
    source: str | Path | VectorSource,
    batch_size: int = 1 << 16,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[VectorBatch]:
    """Stream validated batches of global rows ``[start, stop)`` of a vector input."""
    src = source if isinstance(source, VectorSource) else open_vectors(source)
    if batch_size <= 0:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    end = src.count if stop is None else min(stop, src.count)
    for vf in src.files:
        lo, hi = max(start, vf.offset), min(end, vf.offset + vf.rows)
        if lo >= hi:
            continue
        reader = _iter_npy if vf.kind == "npy" else _iter_parquet
        yield from reader(vf, lo - vf.offset, hi - vf.offset, batch_size)


def id_hash_partitions(
    source: VectorSource, start: int, stop: int, parts: int, batch_size: int = 1 << 16
) -> list[np.ndarray]:
    """The 64-bit hashes of the ids of global rows ``[start, stop)``, split by ``hash % parts``.

    The map side of the id check (``echoseek.index.ids``): a task per row range holds
    ``8·(stop − start)`` bytes. A null id raises naming its file and row.
    """
    hashes = np.empty(max(0, stop - start), dtype=np.uint64)
    filled = 0
    for _, _, ids in iter_ids(source, batch_size, start, stop):
        hashes[filled : filled + len(ids)] = _hash_ids(ids)
        filled += len(ids)
    bucket = hashes % np.uint64(parts)
    return [hashes[bucket == j] for j in range(parts)]


def id_hashes(
    source: VectorSource, start: int, stop: int, parts: int = 1, batch_size: int = 1 << 16
) -> np.ndarray:
    """:func:`id_hash_partitions` of one partition: every hash of rows ``[start, stop)``."""
    return id_hash_partitions(source, start, stop, 1, batch_size)[0]


def repeated_hashes(*parts: np.ndarray, most: int = 1000) -> np.ndarray:
    """The reduce side: hashes that occur more than once in ``parts`` (at most ``most``)."""
    if not parts:
        return np.empty(0, dtype=np.uint64)
    x = np.sort(np.concatenate(parts))
    return np.unique(x[1:][x[1:] == x[:-1]])[:most]


def iter_ids(
    source: VectorSource, batch_size: int, start: int = 0, stop: int | None = None
) -> Iterator[tuple[VectorFile, int, list[str]]]:
    """``(file, first row in the file, ids as strings)`` batches of the id columns of global
    rows ``[start, stop)``, reading only the row groups that hold them.

    A null id raises :class:`~echoseek.errors.InputError` naming the file and row.
    """
    end = source.count if stop is None else min(stop, source.count)
    for vf in source.files:
        lo, hi = max(start, vf.offset), min(end, vf.offset + vf.rows)
        if lo >= hi:
            continue
        for first, table in _row_group_slices(vf, lo - vf.offset, hi - vf.offset, ["id"]):
            col = table.column(0).combine_chunks()
            if col.null_count:
                raise InputError(f"{vf.path}: row {first + _first_null(col)} has a null id")
            values = [str(v) for v in col.to_pylist()]
            for s in range(0, len(values), batch_size):
                yield vf, first + s, values[s : s + batch_size]


def _hash_ids(ids: list[str]) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.util.hash_array(np.asarray(ids, dtype=object)), dtype=np.uint64)


def find_duplicate(source: VectorSource, suspects: set[int], batch_size: int) -> None:
    """Raise naming the first id that really repeats among rows whose hash is in ``suspects``
    (streams the id columns; holds only the suspects' rows). Passes on a mere hash collision."""
    seen: dict[str, tuple[str, int]] = {}
    wanted = np.fromiter(suspects, dtype=np.uint64)
    for vf, first, ids in iter_ids(source, batch_size):
        for j in np.flatnonzero(np.isin(_hash_ids(ids), wanted)):
            item, where = ids[j], (basename(vf.path), first + int(j))
            if item in seen:
                (f0, r0), (f1, r1) = seen[item], where
                raise InputError(
                    f"{source.path}: duplicate vector id {item!r} ({f0} row {r0} and {f1} row "
                    f"{r1}); ids must be unique"
                )
            seen[item] = where


def read_rows(source: VectorSource, rows: np.ndarray) -> np.ndarray:
    """The vectors of global rows ``rows`` (sorted, distinct) as a len(rows)×dim float32 array,
    reading only the Parquet row groups (or the ``.npy`` pages) that hold them. A training
    sample costs the groups it touches, not the whole input."""
    out = np.empty((len(rows), source.dim), dtype=np.float32)
    for vf in source.files:
        lo, hi = np.searchsorted(rows, [vf.offset, vf.offset + vf.rows])
        if lo < hi:
            local = np.asarray(rows[lo:hi], dtype=np.int64) - vf.offset
            read = _npy_rows if vf.kind == "npy" else _parquet_rows
            out[lo:hi] = read(vf, local, source.dim)
    return out


def _npy_rows(vf: VectorFile, local: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(_load_npy(Path(vf.path))[local], dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        row = int(local[np.argmin(finite)])
        raise InputError(f"{vf.path}: row {row} has a NaN or infinite value")
    return x


def _parquet_rows(vf: VectorFile, local: np.ndarray, dim: int) -> np.ndarray:
    out = np.empty((len(local), dim), dtype=np.float32)
    pf = parquet_file(vf.path)
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    starts = np.cumsum([0, *sizes])
    cuts = np.searchsorted(local, starts)  # local[cuts[g]:cuts[g + 1]] lie in group g
    for g in np.flatnonzero(np.diff(cuts)):
        table = pf.read_row_group(int(g), columns=[vf.column])
        x = _parquet_vectors(table.column(vf.column).combine_chunks(), vf, int(starts[g]))
        a, b = cuts[g], cuts[g + 1]
        out[a:b] = x[local[a:b] - starts[g]]
    return out


def _row_group_slices(
    vf: VectorFile, lo: int, hi: int, columns: list[str]
) -> Iterator[tuple[int, pa.Table]]:
    """``(first file row, table)`` of rows ``[lo, hi)`` of a Parquet file, one per row group
    that holds any of them (the others are never read)."""
    pf = parquet_file(vf.path)
    group_start = 0
    for g in range(pf.metadata.num_row_groups):
        group_rows = pf.metadata.row_group(g).num_rows
        g_lo, g_hi = max(lo, group_start), min(hi, group_start + group_rows)
        if g_lo < g_hi:
            table = pf.read_row_group(g, columns=columns)
            yield g_lo, table.slice(g_lo - group_start, g_hi - g_lo)
        group_start += group_rows
        if group_start >= hi:
            break


def check_vectors(
    vectors: np.ndarray, dim: int, where: str, first_row: int | None = None
) -> np.ndarray:
    """Check an N×dim batch is 2-D, of width ``dim`` and finite; return it as float32."""
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InputError(f"{where}: expected vectors of shape (N, {dim}), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{where}: expected numeric vectors, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite)) + (first_row or 0)
        raise InputError(f"{where}: row {row} has a NaN or infinite value")
    return arr


def write_vectors(
    out_dir: str | Path,
    batches: Iterable[VectorBatch | tuple[Any, ...]],
    dim: int,
    model_uri: str,
    *,
    overwrite: bool = False,
    rows_per_file: int = ROWS_PER_FILE,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stream ``(ids, vectors[, metadata])`` batches into a new vectors artifact.

    Nothing appears at ``out_dir`` unless every batch is valid and written; returns the
    descriptor. Metadata keys must be a subset of ``label, source, frame_index`` and the same in
    every batch.
    """
    if dim <= 0:
        raise InputError(f"{out_dir}: vector dimension must be positive, got {dim}")
    with staged_dir(out_dir, overwrite=overwrite) as staging:
        writer = _PartWriter(staging, dim, rows_per_file)
        for batch in batches:
            writer.add(_as_batch(batch, dim, writer.count))
        writer.close()
        if writer.count == 0:
            raise InputError(f"{out_dir}: no vectors to write (the input was empty)")
        desc = finish_vectors(staging, writer.files, dim, model_uri, extra)
    return desc


def write_vector_part(
    folder: str | Path, name: str, batch: VectorBatch | tuple[Any, ...], dim: int
) -> dict[str, Any]:
    """Write one part file of a vectors artifact (``folder/name``, a temporary name first,
    renamed, or uploaded from node-local scratch to a store, when complete, so a retried
    writer replaces it whole); return its ``files``
    entry ``{file, rows, sha256}``. Parts are what embedding actors write on any node, so
    no vector passes through the driver (:func:`finish_vectors` lists them)."""
    with writing(join(folder, name)) as tmp:
        writer = _PartWriter(tmp.parent, dim, rows_per_file=1 << 62, names=iter([tmp.name]))
        writer.add(_as_batch(tuple(batch), dim, 0))
        writer.close()
    return {**writer.files[0], "file": name}


def finish_vectors(
    folder: str | Path,
    files: list[dict[str, Any]],
    dim: int,
    model_uri: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the descriptor of the parts ``files`` (in row order) into ``folder``; return it.

    An artifact with no rows is refused, naming the folder."""
    rows = sum(int(f["rows"]) for f in files)
    if rows == 0:
        raise InputError(f"{folder}: no vectors to write (the input was empty)")
    desc = _descriptor(files, rows, dim, model_uri, extra or {})
    write_bytes(join(folder, DESCRIPTOR), (json.dumps(desc, indent=2) + "\n").encode())
    return desc


def read_descriptor(path: str | Path) -> dict[str, Any]:
    """Load and validate ``vectors.json`` of a vectors artifact (a folder or a URI)."""
    missing = f"not a vectors artifact (no {DESCRIPTOR})"
    if not is_uri(path):
        return read_json_document(Path(path) / DESCRIPTOR, FORMAT, FORMAT_VERSION, missing)
    where = join(path, DESCRIPTOR)
    if not is_file(where):
        raise InputError(f"{path}: {missing}")
    return parse_json_document(read_bytes(where), where, FORMAT, FORMAT_VERSION)


# --- reading ------------------------------------------------------------------------------


def _artifact_files(root: str | Path, desc: dict[str, Any]) -> list[VectorFile]:
    where = join(root, DESCRIPTOR)
    entries = desc.get("files")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{where}: 'files' must be a list of {{file, rows, sha256}} objects")
    files, offset = [], 0
    for i, entry in enumerate(entries):
        p = member(root, entry.get("file"), f"{where} files[{i}].file")
        if not is_file(p):
            raise InputError(f"{p}: file listed in {DESCRIPTOR} is missing")
        vf = _inspect_file(p, offset)
        if vf.rows != entry.get("rows", vf.rows):
            raise InputError(f"{p}: has {vf.rows} rows but {DESCRIPTOR} says {entry['rows']}")
        files.append(vf)
        offset += vf.rows
    return files


def _folder_files(root: str | Path) -> list[VectorFile]:
    names = [n for n in list_files(root, recursive=False) if n.endswith((".npy", ".parquet"))]
    paths = [join(root, n) for n in names]
    if not paths:
        raise InputError(f"{root}: no .npy or .parquet vector files in this folder")
    files, offset = [], 0
    for p in paths:
        vf = _inspect_file(p, offset)
        files.append(vf)
        offset += vf.rows
    return files


def _inspect_file(path: str, offset: int) -> VectorFile:
    if path.endswith(".npy") and is_uri(path):
        raise InputError(
            f"{path}: .npy vectors are memory-mapped and must be on a filesystem; in an object "
            "store keep Parquet vectors (echoseek embed writes them)"
        )
    if path.endswith(".npy"):
        arr = _load_npy(Path(path))
        return VectorFile(path, "npy", int(arr.shape[0]), offset)
    if path.endswith(".parquet"):
        try:
            meta = parquet_file(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
        names = meta.schema_arrow.names
        column = next((c for c in VECTOR_COLUMNS if c in names), None)
        if column is None:
            raise InputError(f"{path}: no 'vector' column (columns: {', '.join(names)})")
        return VectorFile(path, "parquet", meta.metadata.num_rows, offset, column, "id" in names)
    raise InputError(f"{path}: unsupported vector file (expected .npy or .parquet)")


def _load_npy(path: Path) -> np.ndarray:
    return load_npy(path)


def _file_dim(vf: VectorFile) -> int:
    if vf.kind == "npy":
        return int(_load_npy(Path(vf.path)).shape[1])
    pf = parquet_file(vf.path)
    tp = pf.schema_arrow.field(vf.column).type
    if pa.types.is_fixed_size_list(tp):
        return int(tp.list_size)
    if not (pa.types.is_list(tp) or pa.types.is_large_list(tp)):
        raise InputError(f"{vf.path}: column '{vf.column}' is {tp}, not a list of floats")
    for batch in pf.iter_batches(batch_size=1, columns=[vf.column]):
        if batch.num_rows:
            return len(batch.column(0)[0])
    return 0


def _check_same_dim(dims: dict[str, int], declared: Any) -> None:
    nonempty = {p: d for p, d in dims.items() if d}
    if not nonempty:
        return
    first_path, first = next(iter(nonempty.items()))
    if declared is not None and declared != first:
        raise InputError(f"{first_path}: vectors have dim {first} but {DESCRIPTOR} says {declared}")
    for p, d in nonempty.items():
        if d != first:
            raise InputError(f"{p}: vectors have dim {d} but {first_path} has dim {first}")


def _iter_npy(vf: VectorFile, lo: int, hi: int, batch_size: int) -> Iterator[VectorBatch]:
    arr = _load_npy(Path(vf.path))
    for s in range(lo, hi, batch_size):
        e = min(hi, s + batch_size)
        x = check_vectors(arr[s:e], arr.shape[1], vf.path, first_row=s)
        ids = [str(i) for i in range(vf.offset + s, vf.offset + e)]
        yield VectorBatch(ids, x, {})


def _iter_parquet(vf: VectorFile, lo: int, hi: int, batch_size: int) -> Iterator[VectorBatch]:
    names = parquet_file(vf.path).schema_arrow.names
    columns = [vf.column] + [c for c in ("id", *METADATA_TYPES) if c in names]
    for first, table in _row_group_slices(vf, lo, hi, columns):
        for s in range(0, table.num_rows, batch_size):
            yield _parquet_batch(table.slice(s, batch_size), vf, first + s)


def _parquet_batch(table: pa.Table, vf: VectorFile, first_row: int) -> VectorBatch:
    col = table.column(vf.column).combine_chunks()
    x = _parquet_vectors(col, vf, first_row)
    if "id" in table.column_names:
        id_col = table.column("id")
        if id_col.null_count:
            nulls = np.asarray(id_col.combine_chunks().is_null())
            raise InputError(f"{vf.path}: row {first_row + int(np.argmax(nulls))} has a null id")
        ids = [str(v) for v in id_col.to_pylist()]
    else:
        ids = [str(vf.offset + first_row + i) for i in range(len(col))]
    meta = {c: table.column(c).to_pylist() for c in METADATA_TYPES if c in table.column_names}
    return VectorBatch(ids, x, meta)


def _parquet_vectors(col: pa.Array, vf: VectorFile, first_row: int) -> np.ndarray:
    """A vector column as a checked N×dim float32 array (rows numbered from ``first_row``)."""
    if col.null_count:
        raise InputError(f"{vf.path}: row {first_row + _first_null(col)} has a null vector")
    lengths = np.asarray(col.value_lengths()) if not pa.types.is_fixed_size_list(col.type) else None
    flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
    dim = flat.size // max(1, len(col))
    if lengths is not None and (lengths != dim).any():
        bad = int(np.argmax(lengths != dim))
        raise InputError(f"{vf.path}: row {first_row + bad} has {lengths[bad]} values, not {dim}")
    return check_vectors(flat.reshape(len(col), dim), dim, vf.path, first_row=first_row)


def _first_null(col: pa.Array) -> int:
    return int(np.argmax(np.asarray(col.is_null())))


# --- writing ------------------------------------------------------------------------------


class _PartWriter:
    """Rolls ``part-*.parquet`` files of ``rows_per_file`` rows in row groups."""

    def __init__(
        self, root: Path, dim: int, rows_per_file: int, names: Iterator[str] | None = None
    ) -> None:
        if rows_per_file <= 0:
            raise InputError(f"rows_per_file must be positive, got {rows_per_file}")
        self.root, self.dim, self.rows_per_file = root, dim, rows_per_file
        numbered = (f"part-{i:05d}.parquet" for i in itertools.count())
        self.names = names if names is not None else numbered
        self.files: list[dict[str, Any]] = []
        self.count = 0
        self._meta_keys: tuple[str, ...] | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, batch: VectorBatch) -> None:
        keys = tuple(sorted(batch.metadata))
        if self._meta_keys is None:
            self._meta_keys = keys
        elif keys != self._meta_keys:
            raise InputError(
                f"{self.root.name}: batch metadata columns {list(keys)} differ from the first "
                f"batch's {list(self._meta_keys)}"
            )
        start = 0
        n = len(batch.ids)
        while start < n:
            room = min(self.rows_per_file - self._rows_in_file, ROWS_PER_GROUP - self._pending_rows)
            take = min(n - start, room)  # row groups of at most ROWS_PER_GROUP, whatever the batch
            self._write(batch, start, start + take)
            start += take

    def _write(self, batch: VectorBatch, s: int, e: int) -> None:
        if self._writer is None:
            self._open()
        assert self._writer is not None
        values = pa.array(batch.vectors[s:e].reshape(-1), type=pa.float32())
        columns: dict[str, pa.Array] = {
            "id": pa.array(batch.ids[s:e], type=pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(values, self.dim),
        }
        for key in self._meta_keys or ():
            columns[key] = pa.array(batch.metadata[key][s:e], type=METADATA_TYPES[key])
        self._pending.append(pa.table(columns, schema=self._schema()))
        self._pending_rows += e - s
        self._rows_in_file += e - s
        self.count += e - s
        if self._pending_rows >= ROWS_PER_GROUP:
            self._flush_group()
        if self._rows_in_file >= self.rows_per_file:
            self._close_file()

    def _flush_group(self) -> None:
        """Write the buffered small batches as one row group (fast, seekable reads)."""
        if self._writer is not None and self._pending:
            self._writer.write_table(pa.concat_tables(self._pending), row_group_size=1 << 30)
        self._pending, self._pending_rows = [], 0

    def _schema(self) -> pa.Schema:
        fields = [("id", pa.string()), ("vector", pa.list_(pa.float32(), self.dim))]
        fields += [(k, METADATA_TYPES[k]) for k in self._meta_keys or ()]
        return pa.schema(fields)

    def _open(self) -> None:
        name = next(self.names)
        self._writer = pq.ParquetWriter(
            self.root / name, self._schema(), compression="zstd", write_statistics=False
        )
        self.files.append({"file": name, "rows": 0, "sha256": ""})
        self._rows_in_file = 0

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._flush_group()
        self._writer.close()
        self._writer = None
        entry = self.files[-1]
        entry["rows"] = self._rows_in_file
        entry["sha256"] = sha256_file(self.root / entry["file"])

    def close(self) -> None:
        self._close_file()


def _as_batch(batch: VectorBatch | tuple[Any, ...], dim: int, row: int) -> VectorBatch:
    if not isinstance(batch, tuple) or len(batch) not in (2, 3):
        raise InputError(f"write_vectors: expected (ids, vectors[, metadata]) batches at row {row}")
    ids, vectors = list(batch[0]), batch[1]
    metadata = dict(batch[2]) if len(batch) == 3 and batch[2] else {}
    x = check_vectors(vectors, dim, "write_vectors", first_row=row)
    if len(ids) != len(x):
        raise InputError(f"write_vectors: {len(ids)} ids for {len(x)} vectors at row {row}")
    unknown = sorted(set(metadata) - set(METADATA_TYPES))
    if unknown:
        raise InputError(
            f"write_vectors: unknown metadata column '{unknown[0]}' "
            f"(known: {', '.join(METADATA_TYPES)})"
        )
    meta = {k: list(v) for k, v in metadata.items()}
    for k, v in meta.items():
        if len(v) != len(x):
            raise InputError(f"write_vectors: metadata '{k}' has {len(v)} values for {len(x)} rows")
    if any(i is None for i in ids):
        bad = row + next(j for j, i in enumerate(ids) if i is None)
        raise InputError(f"write_vectors: row {bad} has a null id")
    return VectorBatch([str(i) for i in ids], x, meta)


def _descriptor(
    files: list[dict[str, Any]], rows: int, dim: int, model_uri: str, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_uri": model_uri,
        "dim": dim,
        "dtype": "float32",
        "count": rows,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
        "sha256": combined_sha256([f["sha256"] for f in files]),
        **extra,
    }
