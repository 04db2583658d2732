"""A shard group: the shards ``i`` with ``i % groups == group`` of whichever version is asked.

Each shard searcher deployment (and the in-process service) holds one :class:`ShardGroup`.
With a node cache (``node_cache``, always for an index in an object store) a group serves
node-local copies of its files, copied and checksummed once per node
(:mod:`echoseek.service.node_copy`); else it memory-maps them where they are and checksums
them on open.
Requests name the version they search, so one request never mixes versions while a swap is
under way: a group opens a version the first time it is asked for it (memory-mapped, its own
files checksummed) and keeps the ``keep`` most recently opened. Taking shards by modulo keeps
the grouping valid when ``index add`` appends shards to a new version.

A group re-ranks its own best candidates exactly (``IndexReader.search``), so the ingress
merges exact scores: a superset of the candidates one reader of all shards would re-rank.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.errors import InputError
from echoseek.index.manifest import read_manifest
from echoseek.index.merge import MISSING_ID
from echoseek.index.reader import IndexReader, open_index
from echoseek.index.rerank import distance_from_score
from echoseek.object_store import is_uri
from echoseek.service.node_copy import copy_version, prune
from echoseek.service.versions import version_dir

Hits = list[list[dict[str, Any]]]  # per query: {"id", "item", "score", "label", ...}


class ShardGroup:
    """Shards ``group, group + groups, ...`` of the versions under ``root``."""

    def __init__(
        self,
        root: str | Path,
        group: int = 0,
        groups: int = 1,
        keep: int = 2,
        cache: Path | None = None,
    ) -> None:
        if not 0 <= group < groups:
            raise ValueError(f"group {group} is not in 0..{groups - 1}")
        self.root = str(root) if is_uri(root) else Path(root)
        self.group, self.groups, self.keep, self.cache = group, groups, keep, cache
        self._readers: OrderedDict[str, IndexReader | None] = OrderedDict()
        self._lock = threading.Lock()

    def shards_of(self, manifest: dict[str, Any]) -> list[int]:
        return [i for i in range(len(manifest["shards"])) if i % self.groups == self.group]

    def reader(self, version: str) -> IndexReader | None:
        """This group's reader of ``version`` (None when the version has no shard for it).

        Opening a version holds a lock so it happens once; searches of versions already open
        never wait for it. An evicted reader is dropped, not closed: a search still running
        on it keeps its own reference.
        """
        try:
            return self._readers[version]
        except KeyError:
            pass
        with self._lock:
            if version not in self._readers:
                path = version_dir(self.root, version)
                manifest = read_manifest(path)
                mine = self.shards_of(manifest)
                self._readers[version] = self._open(path, manifest, mine) if mine else None
                while len(self._readers) > self.keep:
                    self._readers.popitem(last=False)
            return self._readers[version]

    def _open(self, path: str | Path, manifest: dict[str, Any], mine: list[int]) -> IndexReader:
        """This group's shards of the version at ``path``: mapped in place and checksummed,
        or from the node cache (copied and checksummed once per node; older copies pruned)."""
        if self.cache is None:
            return open_index(path, shards=mine)
        local = copy_version(path, manifest, mine, self.cache)
        prune(self.cache, [*self._readers, str(manifest["version"])], self.keep)
        return IndexReader(local, manifest, mine)

    def open_versions(self) -> list[str]:
        """The versions this group holds open, oldest first."""
        return list(self._readers)

    def load(self, version: str) -> list[int]:
        """Open ``version`` now (a swap warms every group before switching); its shards."""
        reader = self.reader(version)
        return [] if reader is None else reader.shard_numbers

    def search(
        self,
        version: str,
        queries: np.ndarray,
        k: int,
        nprobe: int | None,
        rerank: str | bool | None,
    ) -> Hits:
        """Top-``k`` hits of this group's shards for each query, with their metadata."""
        reader = self.reader(version)
        if reader is None:
            return [[] for _ in range(len(queries))]
        scores, ids = reader.search(queries, k, nprobe=nprobe, rerank=rerank)
        name = reader.rerank_name(rerank)
        found = ids[ids != MISSING_ID]
        meta = {int(r["internal_id"]): r for r in reader.lookup(np.unique(found))}
        return [
            [hit(meta[int(i)], float(s), name) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def vectors(self, version: str, ids: list[int]) -> np.ndarray:
        """The stored vectors of ids held by this group (a query by a corpus item)."""
        reader = self.reader(version)
        if reader is None:
            raise InputError(f"id {ids[0]}: not in index version {version}")
        reader.resolve_ids(ids)  # InputError for an id this group does not hold
        return reader.fetch_vectors(np.asarray(ids, dtype=np.int64))

    def lookup(self, version: str, internal_id: int) -> dict[str, Any]:
        """The metadata of one id held by this group (InputError when it holds none)."""
        reader = self.reader(version)
        if reader is None:
            raise InputError(f"id {internal_id}: not in index version {version}")
        return hit(reader.lookup([internal_id])[0], None)


def hit(
    meta: dict[str, Any], score: float | None, reranked_by: str | None = None
) -> dict[str, Any]:
    """One result as the HTTP API returns it: internal ``id``, dataset ``item`` id, ``score``
    (higher is better: the similarity for an ip index or a cosine re-rank, else −distance),
    ``distance`` (with ``distance_name``) when an exact re-rank scored it, ``label``,
    ``source``, ``frame_index``."""
    out = {
        "id": int(meta["internal_id"]),
        "item": meta.get("id"),
        "label": meta.get("label"),
        "source": meta.get("source"),
        "frame_index": meta.get("frame_index"),
    }
    if score is not None:
        out["score"] = score
    if score is not None and reranked_by is not None:
        out["distance"] = float(distance_from_score(score, reranked_by))
        out["distance_name"] = reranked_by
    return out


def merge_hits(parts: list[Hits], k: int) -> Hits:
    """The global top-``k`` of per-group hit lists (score descending, then id ascending, as
    :func:`echoseek.index.merge.merge_topk` orders)."""
    queries = len(parts[0]) if parts else 0
    out = []
    for q in range(queries):
        row = [h for part in parts for h in part[q]]
        row.sort(key=lambda h: (-h["score"], h["id"]))
        out.append(row[:k])
    return out
