"""The build's nprobe calibration as Ray tasks per shard, merged as they arrive.

It measures what :func:`~echoseek.index.recall.calibrate_nprobe` measures on one reader (a
seeded sample of stored vectors as queries, each scored without its own id; the smallest
swept nprobe whose recall@k with the version's default re-rank reaches the target), split so
that the driver reads only the queries, whatever N:

1. the driver samples the query ids (:func:`~echoseek.index.recall.sample_live_ids`) and
   reads their stored float16 vectors (:func:`stored_vectors`: a few hundred rows);
2. one task per shard (:func:`shard_part`) opens that shard alone and returns its exact
   top-``k+1`` and, for each swept nprobe, its top-``depth`` candidates by approximate score
   with their exact re-rank scores;
3. the driver folds each part into running lists (:class:`Merged`): the exact top-``k+1``,
   and per nprobe the top-``depth`` by approximate score, which are the candidates one search
   over every shard would re-rank (:meth:`~echoseek.index.reader.IndexReader.search`). The
   found top-``k+1`` are the best of those by re-rank score. The driver holds
   Q × depth × nprobes entries, for any N and shard count.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.index.manifest import listed_files
from echoseek.index.merge import MISSING_ID, merge_topk, merge_topk_carrying, sort_results
from echoseek.index.reader import IndexReader
from echoseek.index.recall import (
    CALIBRATION_K,
    calibration_record,
    default_nprobes,
    exact_knn,
    sample_live_ids,
    without_self,
)
from echoseek.index.rerank import exact_distances, score_from_distance
from echoseek.index.tasks import WORKER_BASE_BYTES, Placement, as_completed, submit
from echoseek.object_store import is_uri, local_files, member, open_input

Part = dict[str, Any]
RANGED_READS = 16  # concurrent ranged reads of query rows in an object store


def shard_part(
    version_dir: str, manifest: dict[str, Any], shard: int, queries: np.ndarray, k: int
) -> Part:
    """One shard's share of the calibration: ``exact`` (scores, ids) top-``k``, and per swept
    nprobe its ``depth`` best candidates ``(approximate scores, ids, re-rank scores)``. A
    version in an object store is read from node-local copies of the shard's files."""
    names = [name for name, _ in listed_files(manifest, [shard])]
    with (
        local_files(version_dir, names, f"{version_dir} manifest") as local,
        IndexReader(local, manifest, [shard]) as reader,
    ):
        q = reader.prepare_queries(queries)
        exact = exact_knn(reader, q, k)
        name, depth = reader.default_rerank, reader.rerank_depth(k)
        found = []
        for nprobe in default_nprobes(int(manifest["params"]["nlist"])):
            s, ids = reader.candidates(q, depth if name else k, nprobe)
            if name:
                dist = exact_distances(q, ids, reader.fetch_vectors, name)
                s_exact = score_from_distance(dist, name)
            found.append((s, ids, s_exact if name else s))
    return {"exact": exact, "candidates": found}


@dataclass
class Merged:
    """Running top lists over the parts seen so far."""

    k: int
    depth: int
    exact: tuple[np.ndarray, np.ndarray] | None = None
    candidates: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, part: Part) -> None:
        """Fold one shard's part in."""
        if self.exact is None:
            self.exact = merge_topk([part["exact"][0]], [part["exact"][1]], self.k)
            self.candidates = [self._top(c, None) for c in part["candidates"]]
            return
        self.exact = merge_topk(
            [self.exact[0], part["exact"][0]], [self.exact[1], part["exact"][1]], self.k
        )
        self.candidates = [
            self._top(c, mine) for c, mine in zip(part["candidates"], self.candidates, strict=True)
        ]

    def found(self, j: int) -> np.ndarray:
        """The ids a search at the ``j``-th swept nprobe returns: best ``k`` by re-rank."""
        _, ids, rerank = self.candidates[j]
        ids = np.where(np.isfinite(rerank), ids, MISSING_ID)
        return sort_results(rerank, ids)[1][:, : self.k]

    def _top(
        self, new: tuple[np.ndarray, ...], mine: tuple[np.ndarray, ...] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [new] if mine is None else [mine, new]
        return merge_topk_carrying(
            [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts], self.depth
        )


def calibrate_on_shards(
    version_dir: str | Path,
    manifest: dict[str, Any],
    *,
    target: float,
    n_queries: int,
    seed: int = 0,
    k: int = CALIBRATION_K,
    use_ray: bool = True,
) -> dict[str, Any]:
    """The calibration record of :func:`~echoseek.index.recall.calibrate_nprobe`, measured
    by one task per shard (see the module docstring)."""
    start = time.perf_counter()
    own = sample_live_ids(manifest, n_queries, seed)
    queries = stored_vectors(version_dir, manifest, own)
    depth = max(k + 1, manifest.get("default_rerank_depth") or max(100, 2 * (k + 1)))
    merged = Merged(k + 1, depth)
    pending = submit(
        shard_part,
        [(str(version_dir), manifest, i, queries, k + 1) for i in range(len(manifest["shards"]))],
        [part_placement(s["count"], manifest["dim"]) for s in manifest["shards"]],
        use_ray,
    )
    for _, part in as_completed(pending):
        merged.add(part)
    assert merged.exact is not None
    truth = without_self(merged.exact[1], own, k)
    return calibration_record(
        default_nprobes(int(manifest["params"]["nlist"])),
        lambda j, _: without_self(merged.found(j), own, k),
        truth, k=k, target=target, rerank=manifest.get("default_rerank") or None, start=start,
    )  # fmt: skip


def stored_vectors(
    version_dir: str | Path, manifest: dict[str, Any], ids: np.ndarray
) -> np.ndarray:
    """The stored (float16) vectors of internal ``ids`` as float32, read row by row from the
    shards' re-rank files (one seek and read per row: a memory map fancy-indexed here
    brought the whole file into the process, 256 MB per million rows)."""
    out = np.empty((len(ids), int(manifest["dim"])), dtype=np.float32)
    for s in manifest["shards"]:
        sel = np.flatnonzero((ids >= s["id_start"]) & (ids < s["id_start"] + s["count"]))
        if sel.size:
            path = member(version_dir, s["vectors"]["file"], f"{version_dir} manifest")
            out[sel] = read_npy_rows(path, ids[sel] - s["id_start"])
    return out


def read_npy_rows(path: str | Path, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of a 2-D C-ordered ``.npy`` file, read with one seek each; in an object
    store, one ranged read each, :data:`RANGED_READS` at a time (one request costs a round
    trip: 300 rows one after another took 20 s against a local S3 server)."""
    with open_input(path) as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(f)
        start, width = f.tell(), shape[1] * dtype.itemsize
        offsets = [start + int(row) * width for row in rows]
        if is_uri(path):
            ranged: Any = f  # pyarrow's file: read_at is thread-safe
            with ThreadPoolExecutor(RANGED_READS) as pool:
                chunks = list(pool.map(lambda at: ranged.read_at(width, at), offsets))
        else:
            chunks = [_read_at(f, width, at) for at in offsets]
    out = np.empty((len(rows), shape[1]), dtype=dtype)
    for j, chunk in enumerate(chunks):
        out[j] = np.frombuffer(chunk, dtype=dtype)
    return out


def _read_at(f: Any, size: int, offset: int) -> bytes:
    f.seek(offset)
    return bytes(f.read(size))


def part_placement(rows: int, dim: int) -> Placement:
    """A calibration task: the shard's float16 vectors it reads (page cache, counted in its
    RSS as it scans them) and the chunked exact search."""
    return Placement(memory=WORKER_BASE_BYTES + 2 * rows * dim + (64 << 20))
