"""The index version manifest: what a version holds and how readers check it.

``manifest.json`` (shared/DESIGN.md, "Artifacts")::

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
      "model_uri": "...", "dataset_sha256": "...", "vectors_sha256": "...",
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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from echoseek.errors import InputError
from echoseek.storage import read_json_document, sha256_file, write_json_atomic

FORMAT = "echoseek.index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TRAINED = "trained.faiss"


def shard_names(shard: int) -> dict[str, str]:
    """File names of shard number ``shard``: index, float16 vectors, metadata."""
    stem = f"shard-{shard:05d}"
    return {
        "file": f"{stem}.faiss",
        "vectors": f"{stem}.vectors.npy",
        "metadata": f"{stem}.meta.parquet",
    }


def read_manifest(version_dir: str | Path) -> dict[str, Any]:
    """Load and validate ``manifest.json`` of a version directory."""
    path = Path(version_dir) / MANIFEST
    manifest = read_json_document(
        path, FORMAT, FORMAT_VERSION, f"not an index version (no {MANIFEST})"
    )
    for key in ("version", "dim", "metric", "factory", "shards", "trained", "next_id"):
        if key not in manifest:
            raise InputError(f"{path}: manifest has no '{key}'")
    return manifest


def write_manifest(version_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename)."""
    write_json_atomic(Path(version_dir) / MANIFEST, manifest)


def listed_files(manifest: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every ``(file, sha256)`` the manifest lists: trained index, shards, vectors, metadata."""
    yield manifest["trained"]["file"], manifest["trained"]["sha256"]
    for shard in manifest["shards"]:
        yield shard["file"], shard["sha256"]
        for part in ("vectors", "metadata"):
            yield shard[part]["file"], shard[part]["sha256"]


def verify_files(version_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Check every listed file exists and matches its SHA-256; name the first that does not."""
    root = Path(version_dir)
    for name, digest in listed_files(manifest):
        path = root / name
        if not path.is_file():
            raise InputError(f"{path}: file listed in {MANIFEST} is missing")
        if sha256_file(path) != digest:
            raise InputError(f"{path}: checksum mismatch (the file is corrupt or was modified)")
