"""Which index version a request or a swap may name, and whether it can replace the served one.

A version is named by its id (``v<timestamp>-<hex>``, :data:`echoseek.index.publish.VERSION_RE`)
or ``latest``; the directory is always ``<configured index root>/<id>``, so a request value is
matched against a pattern and never used as a path. A swap is refused (the served version
keeps serving) when the new version's files fail their checksums or its dimension or metric
differ from what the service embeds and searches with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoseek.errors import InputError
from echoseek.index.manifest import read_manifest, verify_files
from echoseek.index.publish import VERSION_RE, read_latest
from echoseek.object_store import is_file, is_uri, join
from echoseek.service.images import QueryError

LATEST = "latest"


@dataclass(frozen=True)
class Served:
    """One index version as the ingress serves it (the manifest fields it answers with)."""

    version: str
    manifest: dict[str, Any]
    tombstones: frozenset[int] = field(init=False, repr=False)  # deleted ids, read once

    def __post_init__(self) -> None:
        deleted = frozenset(int(i) for i in self.manifest.get("tombstones") or [])
        object.__setattr__(self, "tombstones", deleted)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def metric(self) -> str:
        return str(self.manifest["metric"])

    @property
    def shard_count(self) -> int:
        return len(self.manifest["shards"])

    def document(self, model: str) -> dict[str, Any]:
        """The ``GET /v1/index`` answer."""
        m = self.manifest
        live = int(m["ntotal"]) - len(self.tombstones)
        return {
            "version": self.version,
            "ntotal": int(m["ntotal"]),
            "live": live,
            "dim": self.dim,
            "metric": self.metric,
            "factory": m["factory"],
            "shards": self.shard_count,
            "default_nprobe": m.get("default_nprobe"),
            "model": model or m.get("model_uri") or "",
            "index_model_uri": m.get("model_uri") or "",
            "dataset_sha256": m.get("dataset_sha256") or "",
            "created": m.get("created") or "",
            "parent": m.get("parent"),
        }

    def shard_of(self, internal_id: int) -> int | None:
        """The shard number holding ``internal_id``, or None."""
        for i, s in enumerate(self.manifest["shards"]):
            if s["id_start"] <= internal_id < s["id_start"] + s["count"]:
                return i
        return None


def version_id(root: str | Path, name: str) -> str:
    """The version id ``name`` stands for (``latest`` read from ``LATEST``), checked to be a
    well-formed id; a malformed one is a 400 naming the expected form."""
    if name == LATEST:
        return read_latest(root)
    if not isinstance(name, str) or not VERSION_RE.match(name):
        raise QueryError(
            f"version: expected 'latest' or a version id like v20250101T120000123456-ab12cd, "
            f"got {str(name)[:80]!r}"
        )
    return name


def version_dir(root: str | Path, version: str) -> str | Path:
    """``<root>/<version>`` for a well-formed id (404 when no such version is published); a
    URI for a root in an object store."""
    path = (
        join(root, version_id(root, version))
        if is_uri(root)
        else Path(root) / version_id(root, version)
    )
    if not is_file(join(path, "manifest.json")):
        raise QueryError(f"version {version}: not published under the index root", 404, "not_found")
    return path


def load_served(root: str | Path, version: str, verify: bool = True) -> Served:
    """Read (and checksum) a version under ``root``; InputError names what is wrong."""
    path = version_dir(root, version)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    return Served(str(manifest["version"]), manifest)


def check_replaceable(old: Served, new: Served, embed_dim: int | None) -> None:
    """Refuse ``new`` unless it searches the same space as ``old`` (and the embedder's)."""
    if new.dim != old.dim or (embed_dim is not None and new.dim != embed_dim):
        want = embed_dim if embed_dim is not None else old.dim
        raise InputError(f"version {new.version}: dim {new.dim} differs from the served {want}")
    if new.metric != old.metric:
        raise InputError(
            f"version {new.version}: metric {new.metric} differs from the served {old.metric}"
        )
