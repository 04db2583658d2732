"""Incremental updates: each one publishes a NEW version; published versions never change.

* :func:`add_vectors` reuses the latest version's trained index (coarse quantizer, PQ and OPQ
  codebooks; no retraining), links its shard files into the new version, and adds the new
  vectors as new shard(s) with internal ids from the old ``next_id`` on.
* :func:`delete_ids` links every file and lists the ids as ``tombstones`` in the new
  manifest; searches filter them out. Deleted vectors still occupy space until a rebuild.
* :func:`publish_search_defaults` links every file and sets new search defaults (nprobe,
  re-rank) in the new manifest: how ``echoseek index eval target_recall=…`` tunes a version.

Files are hard-linked when the filesystem allows (instant, no extra space; safe because
published files are immutable), else copied. The base version's checksums are verified first
so a corrupt file is never carried forward.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from echoseek.data.vectors import VectorSource, check_vectors, iter_ids, open_vectors
from echoseek.errors import InputError
from echoseek.index.build import (
    BATCH_SIZE,
    array_batches,
    fill_shard,
    fill_shards,
    plan_shards,
)
from echoseek.index.ids import check_unique_ids
from echoseek.index.manifest import (
    listed_files,
    read_manifest,
    verify_files,
    write_manifest,
)
from echoseek.index.publish import (
    DEFAULT_RETENTION,
    LATEST,
    new_version_id,
    read_latest,
    staged_version,
)
from echoseek.index.reader import IndexReader
from echoseek.storage import sha256_file


def add_vectors(
    index_root: str | Path,
    vectors: str | Path | VectorSource | np.ndarray,
    ids: Sequence[str] | None = None,
    *,
    metadata: dict[str, Sequence[Any]] | None = None,
    num_shards: int = 1,
    batch_size: int = BATCH_SIZE,
    use_ray: bool = False,
    cpus_per_shard: float = 1.0,
    retention: int = DEFAULT_RETENTION,
) -> dict[str, Any]:
    """Publish a new version = latest version + ``vectors`` in ``num_shards`` new shard(s).

    ``vectors`` is a vector input path (artifact, ``.npy``, folder) or an N×dim array with
    optional external ``ids`` and ``metadata`` columns. Returns the new manifest.
    """
    root = Path(index_root)
    base_dir = root / read_latest(root)
    base = read_manifest(base_dir)
    verify_files(base_dir, base)
    version = new_version_id()
    with staged_version(root, version, retention) as staging:
        _link_files(base_dir, staging, base)
        trained = np.fromfile(staging / base["trained"]["file"], dtype=np.uint8)
        first = 1 + max((_shard_number(s["file"]) for s in base["shards"]), default=-1)
        if isinstance(vectors, np.ndarray):
            if ids is not None:
                _check_not_indexed(base_dir, base, [str(i) for i in ids if i is not None], "ids")
            new = [_add_array(trained, vectors, ids, metadata, base, first, staging, batch_size)]
        else:
            source = vectors if isinstance(vectors, VectorSource) else open_vectors(vectors)
            _check_dim(source.dim, base, source.path)
            plans = plan_shards(source.count, num_shards, first, base["next_id"])
            check_unique_ids(source, plans, batch_size, use_ray)
            if source.has_ids:
                new_ids = (i for _, _, batch in iter_ids(source, batch_size) for i in batch)
                _check_not_indexed(base_dir, base, new_ids, source.path)
            new = fill_shards(
                trained,
                source,
                plans,
                staging,
                normalize=bool(base["normalize"]),
                batch_size=batch_size,
                use_ray=use_ray,
                cpus_per_shard=cpus_per_shard,
            )
        for entry in new:
            entry.pop("task", None)  # where each shard was filled: a build's record only
        manifest = _derive(base, version, shards=base["shards"] + new)
        write_manifest(staging, manifest)
    return manifest


def delete_ids(
    index_root: str | Path,
    ids: Sequence[int] | Sequence[str] | np.ndarray,
    *,
    retention: int = DEFAULT_RETENTION,
) -> dict[str, Any]:
    """Publish a new version whose manifest tombstones ``ids`` (internal ints or external strs).

    Unknown ids are an error; so is a list whose ids are all deleted already (nothing new to
    delete: no version is published). Already-deleted ids among new ones are skipped.
    """
    root = Path(index_root)
    base_dir = root / read_latest(root)
    base = read_manifest(base_dir)
    verify_files(base_dir, base)
    reader = IndexReader(base_dir, base)
    try:
        internal = reader.resolve_ids(list(ids)).tolist()
    finally:
        reader.close()
    if not internal:
        raise InputError("delete_ids: no ids given")
    dead = set(int(t) for t in base.get("tombstones", []))
    if dead.issuperset(internal):
        given = list(ids)
        raise InputError(
            f"{root}: nothing to delete: id {str(given[0])!r}"
            + (f" (and {len(set(internal)) - 1} more)" if len(set(internal)) > 1 else "")
            + f" is already deleted in index version {base['version']}; no version published"
        )
    version = new_version_id()
    with staged_version(root, version, retention) as staging:
        _link_files(base_dir, staging, base)
        tombstones = sorted(dead | set(internal))
        manifest = _derive(base, version, shards=base["shards"], tombstones=tombstones)
        write_manifest(staging, manifest)
    return manifest


def publish_search_defaults(
    version_dir: str | Path,
    *,
    nprobe: int,
    rerank: str | None,
    rerank_depth: int | None = None,
    evaluation: dict[str, Any] | None = None,
    retention: int = DEFAULT_RETENTION,
) -> dict[str, Any]:
    """Publish a new version = the version at ``version_dir`` with new search defaults.

    The new version sits beside its parent (same index root), shares its files and differs
    only in ``default_nprobe``, ``default_rerank`` (``rerank=None`` stores ``false``: off),
    ``default_rerank_depth`` and ``evaluation``. ``LATEST`` moves to it when it named the
    parent; tuning an older version publishes the result without rolling ``LATEST`` back.
    Returns the new manifest.
    """
    base_dir = Path(version_dir)
    base = read_manifest(base_dir)
    verify_files(base_dir, base)
    root = base_dir.parent
    latest = root / LATEST
    move = not latest.is_file() or latest.read_text().strip() == base["version"]
    version = new_version_id()
    with staged_version(root, version, retention, move_latest=move) as staging:
        _link_files(base_dir, staging, base)
        manifest = _derive(base, version, shards=base["shards"])
        manifest["default_nprobe"] = int(nprobe)
        manifest["default_rerank"] = rerank or False
        manifest["default_rerank_depth"] = rerank_depth
        if evaluation is not None:
            manifest["evaluation"] = evaluation
        write_manifest(staging, manifest)
    return manifest


def _add_array(
    trained: np.ndarray,
    vectors: np.ndarray,
    ids: Sequence[str] | None,
    metadata: dict[str, Sequence[Any]] | None,
    base: dict[str, Any],
    shard: int,
    out_dir: Path,
    batch_size: int,
) -> dict[str, Any]:
    x = check_vectors(vectors, int(base["dim"]), "vectors")
    if len(x) == 0:
        raise InputError("vectors: no vectors to add")
    if ids is not None and len(ids) != len(x):
        raise InputError(f"ids: {len(ids)} ids for {len(x)} vectors")
    (plan,) = plan_shards(len(x), 1, shard, int(base["next_id"]))
    batches = array_batches(x, ids, metadata, batch_size)
    return fill_shard(trained, batches, plan, out_dir, bool(base["normalize"]), ids is not None)


def _check_not_indexed(
    base_dir: Path, base: dict[str, Any], new_ids: Iterable[str], where: str
) -> None:
    """Refuse external ids that a live vector of the base version already has."""
    dead = set(int(t) for t in base.get("tombstones", []))
    live: set[str] = set()
    for shard in base["shards"]:
        table = pq.read_table(base_dir / shard["metadata"]["file"], columns=["internal_id", "id"])
        pairs = zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)
        live.update(ext for internal, ext in pairs if internal not in dead)
    for item in new_ids:
        if item in live:
            raise InputError(
                f"{where}: vector id {item!r} is already in index version {base['version']} "
                "(delete it first to replace it)"
            )


def _derive(
    base: dict[str, Any],
    version: str,
    shards: list[dict[str, Any]],
    tombstones: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The next version's manifest: the base's settings with new shards / tombstones."""
    tomb = sorted(
        int(t) for t in (base.get("tombstones", []) if tombstones is None else tombstones)
    )
    ntotal = sum(int(s["count"]) for s in shards)
    return {
        **base,
        "version": version,
        "parent": base["version"],
        "ntotal": ntotal,
        "live": ntotal - len(tomb),
        "next_id": max(int(s["id_start"]) + int(s["count"]) for s in shards),
        "shards": sorted(shards, key=lambda s: int(s["id_start"])),
        "tombstones": tomb,
        "created": _now(),
    }


def _link_files(src: Path, dst: Path, manifest: dict[str, Any]) -> None:
    """Hard-link (or copy) every file of a version into ``dst``."""
    for name, digest in listed_files(manifest):
        target = dst / name
        try:
            os.link(src / name, target)
        except OSError:
            shutil.copy2(src / name, target)
            if sha256_file(target) != digest:
                raise InputError(f"{src / name}: changed while being copied") from None


def _check_dim(dim: int, base: dict[str, Any], where: str) -> None:
    if dim != int(base["dim"]):
        raise InputError(f"{where}: vectors have dim {dim} but the index has dim {base['dim']}")


def _shard_number(file: str) -> int:
    """``N`` of ``shard-N.faiss``; -1 for other names (they cannot clash with new shards)."""
    match = re.match(r"shard-(\d+)\.", file)
    return int(match.group(1)) if match else -1


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
