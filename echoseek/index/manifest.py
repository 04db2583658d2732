"""The index version manifest: what a version holds and how readers check it.

``manifest.json`` (README.md, "Artifacts")::

    {
      "format": "echoseek.index", "format_version": 1,
      "version": "v20250101T120000123456-ab12cd", "parent": null,
      "dim": 64, "metric": "ip", "normalize": true,
      "factory": "IVF512,PQ16x8", "params": {...},
      "default_nprobe": 16, "default_rerank": "cosine", "default_rerank_depth": null,
      "ntotal": 20000, "live": 20000, "next_id": 20000,
      "trained": {"file": "trained.faiss", "sha256": "..."},
      "shards": [{"file": "shard-00000.faiss", "count": 10000, "sha256": "...",
                  "id_start": 0,
                  "vectors": {"file": "shard-00000.vectors.npy", "sha256": "..."},
                  "metadata": {"file": "shard-00000.meta.parquet", "sha256": "..."}}, ...],
      "tombstones": [],
      "model_uri": "...", "model_tracking_uri": "...", "dataset_sha256": "...",
      "vectors_sha256": "...",
      "created": "2025-01-01T12:00:00Z", "build": {...}
    }

``default_nprobe`` is measured at build time (the smallest nprobe reaching recall@10 ≥ 0.9
with the default re-rank, recorded under ``build.calibration``); ``default_rerank`` is the
distance ``search(rerank=None)`` re-ranks with: a name, ``false`` (off; Flat versions), or null
(versions from before build-time defaults: the metric's distance unless Flat). A published
manifest is never rewritten: new defaults (``echoseek index eval target_recall=…``), added
vectors and deletions each publish a new version whose ``parent`` names the old one.

Internal faiss ids are int64 global row numbers; shard ``i`` holds the contiguous ids
``[id_start, id_start + count)`` in row order, so its float16 re-rank vectors and metadata rows
are found by ``id − id_start``. Every file is listed with its SHA-256; :func:`verify_files`
rejects a version whose files do not match, naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.distance_params import resolve_params
from echoseek.errors import ConfigError, InputError
from echoseek.object_store import (
    basename,
    is_file,
    is_uri,
    join,
    member,
    read_bytes,
    sha256,
    write_bytes,
)
from echoseek.storage import parse_json_document, read_json_document

FORMAT = "echoseek.index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TRAINED = "trained.faiss"
MAX_ID = 2**63 - 1  # internal ids, counts and dims are int64


def shard_names(shard: int) -> dict[str, str]:
    """File names of shard number ``shard``: index, float16 vectors, metadata."""
    stem = f"shard-{shard:05d}"
    return {
        "file": f"{stem}.faiss",
        "vectors": f"{stem}.vectors.npy",
        "metadata": f"{stem}.meta.parquet",
    }


def read_manifest(version_dir: str | Path) -> dict[str, Any]:
    """Load ``manifest.json`` of a version directory and validate it as a whole.

    Every field a reader relies on is checked for its type and for agreement with the others
    (:func:`check_manifest`); the files' own agreement (checksums, faiss ``ntotal`` and ``d``,
    metadata id ranges) is checked by :func:`verify_files` and the reader.
    """
    missing = f"not an index version (no {MANIFEST})"
    if not is_uri(version_dir):
        path: str | Path = Path(version_dir) / MANIFEST
        manifest = read_json_document(Path(path), FORMAT, FORMAT_VERSION, missing)
    else:
        path = join(version_dir, MANIFEST)
        if not is_file(path):
            raise InputError(f"{version_dir}: {missing}")
        manifest = parse_json_document(read_bytes(path), str(path), FORMAT, FORMAT_VERSION)
    check_manifest(path, manifest)
    return manifest


def check_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    """Raise :class:`InputError` naming ``path`` and the field unless ``manifest`` is sound."""
    for key in ("version", "dim", "metric", "factory", "shards", "trained", "next_id"):
        if key not in manifest:
            raise InputError(f"{path}: manifest has no '{key}'")
    field = _Fields(path, manifest)
    field.string("version")
    field.string("factory")
    field.integer("dim", low=1)
    field.string("metric")
    if manifest["metric"] not in ("ip", "l2"):
        raise InputError(f"{path}: 'metric' must be 'ip' or 'l2', got {manifest['metric']!r}")
    field.optional(bool, "normalize")
    params = manifest.get("params")
    if not isinstance(params, dict) or params.get("kind") not in ("flat", "ivfpq"):
        raise InputError(f"{path}: 'params' must be an object with kind 'flat' or 'ivfpq'")
    if params.get("dim") != manifest["dim"]:
        raise InputError(
            f"{path}: 'params.dim' is {params.get('dim')!r}, not 'dim' {manifest['dim']}"
        )
    field.optional_integer("default_nprobe", low=1)
    field.optional_integer("default_rerank_depth", low=1)
    _check_rerank(path, manifest.get("default_rerank"))
    field.file_entry(manifest["trained"], "trained")
    shards = manifest["shards"]
    if not isinstance(shards, list):
        raise InputError(f"{path}: 'shards' must be a list, got {shards!r:.60}")
    end = 0
    for i, shard in enumerate(shards):
        start = _check_shard(field, shard, f"shards[{i}]")
        if start < end:
            raise InputError(
                f"{path}: shards[{i - 1}] ends at id {end} (id_start + count) but "
                f"shards[{i}].id_start is {start}; shards must hold ascending, disjoint id ranges"
            )
        end = start + shard["count"]
    ntotal = sum(s["count"] for s in shards)
    if manifest.get("ntotal", ntotal) != ntotal:
        raise InputError(
            f"{path}: 'ntotal' is {manifest['ntotal']!r} but the shards' counts add up to {ntotal}"
        )
    field.integer("next_id", low=end)
    tombstones = manifest.get("tombstones", [])
    if not isinstance(tombstones, list) or not all(_is_int(t) for t in tombstones):
        raise InputError(f"{path}: 'tombstones' must be a list of internal ids (integers)")
    if len(set(tombstones)) != len(tombstones):
        raise InputError(f"{path}: 'tombstones' lists an id twice")
    outside = _unstored(tombstones, shards)
    if outside is not None:
        raise InputError(f"{path}: 'tombstones' id {outside} is not stored in any shard")
    if manifest.get("live", ntotal - len(tombstones)) != ntotal - len(tombstones):
        raise InputError(
            f"{path}: 'live' is {manifest['live']!r} but ntotal - tombstones is "
            f"{ntotal - len(tombstones)}"
        )


def _check_rerank(path: str | Path, value: Any) -> None:
    """``default_rerank``: a distance name, false (off) or null (the metric's own)."""
    if value is None or value is False:
        return
    if not isinstance(value, str):
        raise InputError(f"{path}: 'default_rerank' must be a distance name, false or null")

    try:
        resolve_params(value)
    except ConfigError as exc:
        raise InputError(f"{path}: 'default_rerank': {exc}") from None


def _check_shard(field: _Fields, shard: Any, name: str) -> int:
    """Check one ``shards`` entry; return its ``id_start``."""
    field.file_entry(shard, name)
    for part in ("vectors", "metadata"):
        field.file_entry(shard.get(part), f"{name}.{part}")
    field.integer("count", low=0, within=shard, prefix=f"{name}.")
    field.integer("id_start", low=0, within=shard, prefix=f"{name}.")
    return int(shard["id_start"])


def _unstored(ids: list[int], shards: list[dict[str, Any]]) -> int | None:
    """The first of ``ids`` outside every shard's id range, or None."""
    if not ids:
        return None
    ends = [s["id_start"] + s["count"] for s in shards]
    low, high = min(ids), max(ids)
    if not shards or low < shards[0]["id_start"]:
        return low
    if high >= ends[-1]:  # also keeps the ids within int64 below
        return high
    x = np.asarray(ids, dtype=np.int64)
    starts = np.array([s["id_start"] for s in shards], dtype=np.int64)
    shard = np.searchsorted(starts, x, side="right") - 1
    bad = x >= np.asarray(ends, dtype=np.int64)[shard]
    return int(x[np.argmax(bad)]) if bad.any() else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Fields:
    """Type checks of manifest fields, each failure an :class:`InputError` naming the field."""

    def __init__(self, path: str | Path, manifest: dict[str, Any]) -> None:
        self.path, self.manifest = path, manifest

    def string(self, key: str) -> None:
        value = self.manifest[key]
        if not isinstance(value, str) or not value:
            raise InputError(f"{self.path}: '{key}' must be a non-empty string, got {value!r:.60}")

    def integer(
        self, key: str, low: int, within: dict[str, Any] | None = None, prefix: str = ""
    ) -> None:
        value: Any = (self.manifest if within is None else within).get(key)
        if not _is_int(value) or not low <= value <= MAX_ID:
            raise InputError(
                f"{self.path}: '{prefix}{key}' must be an integer >= {low}, got {value!r:.60}"
            )

    def optional_integer(self, key: str, low: int) -> None:
        if self.manifest.get(key) is not None:
            self.integer(key, low)

    def optional(self, kind: type, key: str) -> None:
        value = self.manifest.get(key)
        if value is not None and not isinstance(value, kind):
            raise InputError(f"{self.path}: '{key}' must be a {kind.__name__}, got {value!r:.60}")

    def file_entry(self, entry: Any, name: str) -> None:
        """``{file, sha256}`` with a file name inside the version directory."""
        if not isinstance(entry, dict):
            raise InputError(f"{self.path}: '{name}' must be an object {{file, sha256, ...}}")
        where = f"{self.path} {name}.file"
        root = str(self.path).rsplit("/", 1)[0] if is_uri(self.path) else Path(self.path).parent
        if basename(member(root, entry.get("file"), where)) != entry["file"]:
            raise InputError(f"{where}: {entry['file']!r} is not a plain file name")
        if not isinstance(entry.get("sha256"), str):
            raise InputError(f"{self.path}: '{name}.sha256' must be a hex digest string")


def write_manifest(version_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename; one object write in
    an object store)."""
    write_bytes(join(version_dir, MANIFEST), (json.dumps(manifest, indent=2) + "\n").encode())


def listed_files(
    manifest: dict[str, Any], shards: Sequence[int] | None = None
) -> Iterator[tuple[str, str]]:
    """Every ``(file, sha256)`` the manifest lists: trained index, shards, vectors, metadata
    (of the shard numbers ``shards`` only, when given)."""
    yield manifest["trained"]["file"], manifest["trained"]["sha256"]
    listed = manifest["shards"]
    for shard in listed if shards is None else [listed[i] for i in shards]:
        yield shard["file"], shard["sha256"]
        for part in ("vectors", "metadata"):
            yield shard[part]["file"], shard[part]["sha256"]


def verify_files(
    version_dir: str | Path, manifest: dict[str, Any], shards: Sequence[int] | None = None
) -> None:
    """Check every listed file (of ``shards`` only, when given) exists and matches its
    SHA-256; name the first that does not."""
    for name, digest in listed_files(manifest, shards):
        path = member(version_dir, name, f"{join(version_dir, MANIFEST)} entry")
        if not is_file(path):
            raise InputError(f"{path}: file listed in {MANIFEST} is missing")
        if sha256(path) != digest:
            raise InputError(f"{path}: checksum mismatch (the file is corrupt or was modified)")
