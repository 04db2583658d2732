"""The search library: open a published index version and search all of its shards.

``open_index(path)`` takes an index root (follows ``LATEST``) or a version directory, checks
every listed file against its SHA-256, memory-maps the shard indexes (``faiss.IO_FLAG_MMAP``)
and the float16 re-rank vectors (``np.load(mmap_mode="r")``).

``IndexReader.search`` for ``Q`` queries:

1. queries are checked (2-D, right dim, finite, ``k ≥ 1``) and L2-normalised for cosine
   (``metric="ip"`` with ``normalize``);
2. IVF shards share one trained coarse quantizer, so the (optional OPQ rotation and) list
   assignment of every query is computed once, then every shard scans the same ``nprobe``
   lists (``search_preassigned``, with ``faiss.SearchParametersIVF(nprobe=…)`` so concurrent
   calls with different ``nprobe`` are safe), in a thread pool when the scan is big enough
   to pay for the hand-off (faiss releases the GIL), else one shard after the other;
3. per-shard top lists are merged (:func:`~echoseek.index.merge.merge_topk`), scores
   higher-is-better (inner product, or −squared L2);
4. tombstoned ids are dropped (over-fetching, then searching deeper for rows left short);
5. the best ``rerank_depth`` candidates are re-scored exactly with a distance of
   :mod:`echoseek.distances` on the stored vectors (score = −distance): by default with the
   metric's own distance for approximate (IVF-PQ) versions, off for exact (Flat) ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echoseek.distance_params import resolve_params
from echoseek.errors import EchoseekError, InputError
from echoseek.index.manifest import MANIFEST, read_manifest, verify_files
from echoseek.index.merge import drop_ids, merge_topk
from echoseek.index.params import IndexParams
from echoseek.index.publish import resolve_version_dir
from echoseek.index.rerank import NATURAL_DISTANCE, rerank_candidates
from echoseek.index.train import normalize_rows
from echoseek.storage import contained

MIN_RERANK_DEPTH = 100
PARALLEL_WORK = 200_000  # codes/vectors scanned per call above which shards run concurrently


def open_index(
    path: str | Path, verify: bool = True, shards: Sequence[int] | None = None
) -> IndexReader:
    """Open the version at ``path`` (a version dir, or an index root via ``LATEST``).

    ``shards`` (shard numbers of the manifest) opens only those shards: a reader that
    searches, fetches and looks up the ids they hold (a service's shard searcher).
    """
    version_dir = resolve_version_dir(path)
    manifest = read_manifest(version_dir)
    numbers = check_shard_numbers(manifest, shards)
    if verify:
        verify_files(version_dir, manifest, numbers)
    return IndexReader(version_dir, manifest, numbers)


def check_shard_numbers(manifest: dict[str, Any], shards: Sequence[int] | None) -> list[int]:
    """``shards`` as a sorted list of distinct shard numbers of ``manifest`` (all when None)."""
    total = len(manifest["shards"])
    if shards is None:
        return list(range(total))
    numbers = sorted({int(i) for i in shards})
    if not numbers or numbers[0] < 0 or numbers[-1] >= total:
        raise InputError(
            f"shards: expected shard numbers in 0..{total - 1} of index version "
            f"{manifest['version']}, got {list(shards)}"
        )
    return numbers


class IndexReader:
    """Searches every shard (or the shards numbered ``shards``) of one published index
    version. Thread-safe for searching."""

    def __init__(
        self, version_dir: Path, manifest: dict[str, Any], shards: Sequence[int] | None = None
    ) -> None:
        self.path = Path(version_dir)
        self.manifest = manifest
        self.params = IndexParams.from_dict(manifest["params"])
        self.shard_numbers = check_shard_numbers(manifest, shards)
        listed = [(i, manifest["shards"][i]) for i in self.shard_numbers]
        self._shards = [self._shard_index(i, s) for i, s in listed]
        # plain ndarray views of the memory maps (np.memmap's __getitem__ is slow per call)
        self._vectors = [self._shard_vectors(i, s) for i, s in listed]
        for i, s in listed:
            self._check_metadata_ids(i, s)
        self._listed = [s for _, s in listed]
        self._id_starts = np.array([s["id_start"] for s in self._listed], dtype=np.int64)
        self._counts = np.array([s["count"] for s in self._listed], dtype=np.int64)
        tombstones = np.asarray(manifest.get("tombstones", []), dtype=np.int64)
        self._tombstones = tombstones[self._holds(tombstones)]
        self._ivfs = [_extract_ivf(index) for index in self._shards]
        self._is_ivf = all(ivf is not None for ivf in self._ivfs) and bool(self._shards)
        trained = _read_index(self._file(manifest["trained"]["file"], "trained.file"))
        self._check_dim(trained, "trained")
        self._transform = _pretransform(trained)
        self._quantizer = _extract_ivf(trained).quantizer if self._is_ivf else None
        self._trained = trained  # keeps the quantizer alive
        workers = max(1, min(len(self._shards), os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(workers) if len(self._shards) > 1 else None
        self._metadata: dict[int, pa.Table] = {}
        self._external: dict[str, int] | None = None

    # --- properties ----------------------------------------------------------------------

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def metric(self) -> str:
        return str(self.manifest["metric"])

    @property
    def ntotal(self) -> int:
        """Vectors stored in the opened shards, tombstoned ones included."""
        return int(self._counts.sum())

    @property
    def live(self) -> int:
        """Vectors a search can return (``ntotal`` minus tombstones)."""
        return self.ntotal - len(self._tombstones)

    @property
    def default_nprobe(self) -> int:
        return int(self.manifest.get("default_nprobe") or 1)

    @property
    def default_rerank(self) -> str | None:
        """The distance ``search(rerank=None)`` re-ranks with, or None (no re-rank).

        The manifest's ``default_rerank``: a distance name, or ``false`` for off. Versions
        whose manifest leaves it null re-rank with the metric's exact distance unless the
        index is exact already (Flat).
        """
        value = self.manifest.get("default_rerank")
        if value is None:
            return None if self.params.exact else NATURAL_DISTANCE[self.metric]
        return str(value) if value else None

    @property
    def nlist(self) -> int:
        return int(self._ivfs[0].nlist) if self._is_ivf else 0

    @property
    def tombstones(self) -> np.ndarray:
        return self._tombstones

    # --- search --------------------------------------------------------------------------

    def search(
        self,
        queries: np.ndarray,
        k: int,
        nprobe: int | None = None,
        rerank: str | bool | None = None,
        rerank_depth: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of every query: ``(scores (Q,k) float32, ids (Q,k) int64)``.

        ``nprobe`` defaults to the version's; ``rerank`` is a distance name, ``True`` (the
        metric's own: cosine for ip, sqeuclidean for l2), ``False`` (off) or ``None`` (the
        version's default, :attr:`default_rerank`: exact re-rank with the metric's distance
        for a version built by ``index build`` unless it is Flat). Rows with fewer than ``k``
        live vectors are padded (−inf, −1).
        """
        k = _check_k(k)
        q = self.prepare_queries(queries)
        probe = self._check_nprobe(nprobe)
        name = self.rerank_name(rerank)
        depth = self.rerank_depth(k, rerank_depth) if name else k
        scores, ids = self._search_live(q, depth, probe)
        if name is None:
            return scores[:, :k], ids[:, :k]
        return rerank_candidates(q, ids, self.fetch_vectors, name, k)

    def prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        """Validate queries (1-D or Q×dim, finite) and normalise them if the index does."""
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise EchoseekError(f"queries: expected shape (Q, {self.dim}), got {q.shape}")
        if q.shape[0] == 0:
            raise EchoseekError("queries: no query vectors given")
        if q.dtype.kind not in "fiu":
            raise EchoseekError(f"queries: expected numbers, got dtype {q.dtype}")
        q = np.ascontiguousarray(q, dtype=np.float32)
        if not np.isfinite(q).all():
            raise EchoseekError("queries: contain NaN or infinite values")
        return normalize_rows(q) if self.manifest.get("normalize") else q

    def candidates(self, q: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of prepared queries by approximate score, tombstones removed: what a
        search re-ranks."""
        return self._search_live(q, k, self._check_nprobe(nprobe))

    def search_shards(self, q: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Merged top-``k`` over all shards of prepared queries (tombstones not removed)."""
        if self._is_ivf:
            q, assign, coarse = self._assign(q, nprobe)
            work = len(q) * nprobe * self.ntotal / max(1, self.nlist)  # codes scanned
            parts = self._map(lambda i: _search_ivf(self._ivfs[i], q, k, assign, coarse), work)
        else:
            parts = self._map(lambda i: self._shards[i].search(q, k), len(q) * self.ntotal)
        scores = [self._higher_is_better(d) for d, _ in parts]
        return merge_topk(scores, [i for _, i in parts], k)

    def fetch_vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored (float16) vectors of internal ids as an N×dim float32 array."""
        shard, row = self._locate(ids)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for s, vectors in enumerate(self._vectors):
            sel = np.flatnonzero(shard == s)
            if sel.size:
                out[sel] = vectors[row[sel]]
        return out

    def resolve_ids(self, ids: list[int] | list[str] | np.ndarray) -> np.ndarray:
        """Internal ids of internal (int) or external (str) ids, checked to exist."""
        internal = np.array([self._internal_id(i) for i in ids], dtype=np.int64)
        if internal.size:
            self._locate(internal)
        return internal

    def lookup(self, ids: list[int] | list[str] | np.ndarray) -> list[dict[str, Any]]:
        """Metadata of internal (int) or external (str) ids: one dict per id, in order.

        Each dict holds ``internal_id``, ``id`` (external) and ``label``, ``source``,
        ``frame_index`` (None when the input had none). Unknown or deleted ids raise
        :class:`~echoseek.errors.InputError`.
        """
        internal = self.resolve_ids(ids)
        if internal.size == 0:
            return []
        shard, row = self._locate(internal)
        banned = set(self._tombstones[np.isin(self._tombstones, internal)].tolist())
        if banned:
            raise InputError(f"id {min(banned)}: was deleted from index version {self.version}")
        out: list[dict[str, Any]] = [{} for _ in internal]
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            rows = self._metadata_table(int(s)).take(pa.array(row[sel])).to_pylist()
            for j, rec in zip(sel, rows, strict=True):
                out[j] = rec
        return out

    def live_items(self) -> tuple[list[str], np.ndarray]:
        """External ids and stored vectors (float32; re-normalised for a normalised index) of
        every item not deleted, shard by shard: the version's items as a reference set."""
        ids: list[str] = []
        chunks: list[np.ndarray] = []
        for s in range(len(self._shards)):
            table = self._metadata_table(s)
            internal = np.asarray(table.column("internal_id").to_numpy(), dtype=np.int64)
            keep = ~np.isin(internal, self._tombstones)
            ids += [str(v) for v, k in zip(table.column("id").to_pylist(), keep, strict=True) if k]
            chunks.append(self.fetch_vectors(internal[keep]))
        vectors = np.concatenate(chunks) if chunks else np.empty((0, self.dim), np.float32)
        return ids, normalize_rows(vectors) if self.manifest.get("normalize") else vectors

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Release the thread pool (mmaps close with the reader)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"IndexReader(version={self.version!r}, factory={self.manifest['factory']!r}, "
            f"shards={len(self._shards)}, ntotal={self.ntotal}, live={self.live})"
        )

    # --- opening: the files must agree with the manifest ----------------------------------

    def _file(self, name: str, entry: str) -> Path:
        return contained(self.path, name, f"{self.path / MANIFEST} {entry}")

    def _disagree(self, entry: str, what: str) -> InputError:
        return InputError(f"{self.path / MANIFEST}: {entry} {what}")

    def _check_dim(self, index: Any, entry: str) -> None:
        if index.d != self.dim:
            raise self._disagree(entry, f"is an index of dim {index.d} but 'dim' is {self.dim}")

    def _shard_index(self, i: int, shard: dict[str, Any]) -> Any:
        index = _read_index(self._file(shard["file"], f"shards[{i}].file"))
        self._check_dim(index, f"shards[{i}]")
        if index.ntotal != shard["count"]:
            raise self._disagree(
                f"shards[{i}].count", f"is {shard['count']} but the shard holds {index.ntotal}"
            )
        return index

    def _shard_vectors(self, i: int, shard: dict[str, Any]) -> np.ndarray:
        path = self._file(shard["vectors"]["file"], f"shards[{i}].vectors.file")
        try:
            vectors = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        if vectors.shape != (shard["count"], self.dim):
            raise self._disagree(
                f"shards[{i}].vectors",
                f"holds an array of shape {vectors.shape}, not ({shard['count']}, {self.dim})",
            )
        return vectors

    def _check_metadata_ids(self, i: int, shard: dict[str, Any]) -> None:
        """The metadata rows are the internal ids ``[id_start, id_start + count)`` (from the
        Parquet footer's statistics: no rows are read)."""
        path = self._file(shard["metadata"]["file"], f"shards[{i}].metadata.file")
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
        if meta.num_rows != shard["count"]:
            raise self._disagree(
                f"shards[{i}].count", f"is {shard['count']} but its metadata has {meta.num_rows}"
            )
        lo, hi = _column_range(meta, "internal_id")
        first, last = shard["id_start"], shard["id_start"] + shard["count"] - 1
        if lo is not None and (lo, hi) != (first, last):
            raise self._disagree(
                f"shards[{i}].id_start",
                f"is {first} but the shard stores ids {lo}..{hi}",
            )

    # --- internals -----------------------------------------------------------------------

    def _search_live(self, q: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` without tombstoned ids: over-fetch, and search deeper for short rows."""
        t = len(self._tombstones)
        if t == 0:
            return self.search_shards(q, k, nprobe)
        extra = min(t, max(k, 16))
        while True:
            scores, ids = self.search_shards(q, k + extra, nprobe)
            scores, ids, short = drop_ids(scores, ids, self._tombstones, k)
            if not short.any() or extra >= t:
                return scores, ids
            extra = t

    def _assign(self, q: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self._transform(q) if self._transform is not None else q
        assert self._quantizer is not None
        coarse, assign = self._quantizer.search(x, nprobe)
        return x, assign, coarse

    def _map(self, fn: Any, work: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """``fn(shard)`` for every shard: on the pool when ``work`` (vectors scanned) pays
        for the thread hand-off (~0.1 ms), else in this thread."""
        if self._pool is None or work < PARALLEL_WORK:
            return [fn(i) for i in range(len(self._shards))]
        return list(self._pool.map(fn, range(len(self._shards))))

    def _higher_is_better(self, d: np.ndarray) -> np.ndarray:
        return d if self.metric == "ip" else -d

    def _check_nprobe(self, nprobe: int | None) -> int:
        if nprobe is None:
            nprobe = self.default_nprobe
        if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or nprobe < 1:
            raise EchoseekError(f"nprobe: must be a positive integer, got {nprobe!r}")
        return int(min(nprobe, self.nlist)) if self._is_ivf else 1

    def rerank_name(self, rerank: str | bool | None) -> str | None:
        """The distance a search with ``rerank`` re-ranks by (None: no re-rank)."""
        if rerank is None:
            return self.default_rerank
        if rerank is False:
            return None
        if rerank is True:
            return NATURAL_DISTANCE[self.metric]
        if not isinstance(rerank, str):
            raise EchoseekError(f"rerank: expected a distance name or true/false, got {rerank!r}")

        resolve_params(rerank)
        return rerank

    def rerank_depth(self, k: int, depth: int | None = None) -> int:
        """Candidates a search for ``k`` re-ranks (``depth``, else the version's default)."""
        if depth is None:
            depth = self.manifest.get("default_rerank_depth") or max(MIN_RERANK_DEPTH, 2 * k)
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise EchoseekError(f"rerank_depth: must be a positive integer, got {depth!r}")
        return max(k, int(depth))

    def _holds(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` lie in the opened shards' id ranges (a boolean mask)."""
        shard = np.searchsorted(self._id_starts, ids, side="right") - 1
        ok = shard >= 0
        return ok & (ids - self._id_starts[np.maximum(shard, 0)] < self._counts[shard])

    def _locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        shard = np.searchsorted(self._id_starts, ids, side="right") - 1
        bad = ~self._holds(ids)
        if bad.any():
            raise InputError(f"id {int(ids[np.argmax(bad)])}: not in index version {self.version}")
        return shard, ids - self._id_starts[shard]

    def _internal_id(self, value: Any) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str):
            if self._external is None:
                self._external = self._external_ids()
            if value not in self._external:
                raise InputError(f"id {value!r}: not in index version {self.version}")
            return self._external[value]
        raise InputError(f"id {value!r}: expected an int (internal) or str (external) id")

    def _external_ids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in range(len(self._shards)):
            table = self._metadata_table(s)
            ext = table.column("id").to_pylist()
            out.update(zip(ext, table.column("internal_id").to_pylist(), strict=True))
        return out

    def _metadata_table(self, shard: int) -> pa.Table:
        if shard not in self._metadata:
            name = self._listed[shard]["metadata"]["file"]
            path = self._file(name, f"shards[{shard}].metadata.file")
            # one chunk: Table.take over several chunks costs ~1 ms whatever it takes (250 k
            # rows, 10 ids), 25x a single chunk's, and a search looks up every hit's row
            self._metadata[shard] = pq.read_table(path, memory_map=True).combine_chunks()
        return self._metadata[shard]


def _read_index(path: Path) -> Any:
    """Read a shard memory-mapped where faiss supports it, else into memory."""
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        try:
            return faiss.read_index(str(path))
        except RuntimeError as exc:
            raise InputError(f"{path}: not a readable faiss index ({exc})") from None


def _column_range(meta: pq.FileMetaData, column: str) -> tuple[Any, Any]:
    """(min, max) of an integer column from row-group statistics, or (None, None) when the
    file has no such column or statistics."""
    names = [meta.schema.column(j).name for j in range(meta.num_columns)]
    if column not in names or meta.num_row_groups == 0:
        return None, None
    j = names.index(column)
    stats = [meta.row_group(g).column(j).statistics for g in range(meta.num_row_groups)]
    if any(st is None or not st.has_min_max for st in stats):
        return None, None
    return min(st.min for st in stats), max(st.max for st in stats)


def _extract_ivf(index: Any) -> Any:
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):
        return None


def _pretransform(index: Any) -> Any:
    """A function applying the index's vector transforms (e.g. OPQ), or None."""
    outer: Any = faiss.downcast_index(index)
    if not isinstance(outer, faiss.IndexPreTransform):
        return None
    links: Any = outer.chain
    chain = [faiss.downcast_VectorTransform(links.at(i)) for i in range(links.size())]

    def apply(x: np.ndarray) -> np.ndarray:
        for vt in chain:
            x = np.ascontiguousarray(vt.apply(x), dtype=np.float32)
        return x

    return apply


def _search_ivf(
    ivf: Any, x: np.ndarray, k: int, assign: np.ndarray, coarse: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``ivf.search_preassigned`` with a per-call ``nprobe`` (thread-safe, no state change)."""
    n, nprobe = assign.shape
    assign = np.ascontiguousarray(assign, dtype=np.int64)  # kept alive across the C call
    coarse = np.ascontiguousarray(coarse, dtype=np.float32)
    distances = np.empty((n, k), dtype=np.float32)
    labels = np.empty((n, k), dtype=np.int64)
    params: Any = faiss.SearchParametersIVF()
    params.nprobe = nprobe
    ivf.search_preassigned_c(
        n,
        faiss.swig_ptr(x),
        k,
        faiss.swig_ptr(assign),
        faiss.swig_ptr(coarse),
        faiss.swig_ptr(distances),
        faiss.swig_ptr(labels),
        False,
        params,
    )
    return distances, labels


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise EchoseekError(f"k: must be a positive integer, got {k!r}")
    return int(k)
