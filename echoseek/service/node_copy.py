"""Node-local copies of the index files a searcher serves.

A searcher replica copies the files of its shards of a version from the index root (a mounted
path or an object-store URI) to node-local disk once, checks each file's SHA-256 there, and
memory-maps the copy: page-cache misses then read a local disk, not the shared mount, and a
version is hashed once per node, not once per replica and swap. Layout::

    <cache>/<version>/manifest.json, trained.faiss, shard-00003.faiss, ...

Replicas on one node share the copies: each file is copied under an exclusive ``flock`` of
its own lock file, to a temporary name, and renamed into place only once its checksum holds,
so a file present under its name is complete and verified, and the next replica takes it as
is. A corrupt source is refused by name and nothing of it stays. After a swap,
:func:`prune` removes the copies of all but the newest versions in use: a replica still
mapping a removed file keeps its pages (an unlinked file lives while it is mapped).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from echoseek.errors import InputError
from echoseek.index.manifest import MANIFEST, listed_files
from echoseek.index.params import IndexParams
from echoseek.index.publish import VERSION_RE
from echoseek.object_store import download, is_uri, member, temporary_path
from echoseek.storage import sha256_file

LOCK_SUFFIX = ".lock"


def cache_root(configured: str) -> Path:
    """The node-local directory copies go to: ``configured``, else ``$ECHOSEEK_CACHE``, else
    ``<system temp>/echoseek-cache``."""
    default = Path(tempfile.gettempdir()) / "echoseek-cache"
    return Path(configured or os.environ.get("ECHOSEEK_CACHE") or default)


def node_cache(index: str, configured: str) -> Path | None:
    """The cache a service's searchers copy to: ``configured``, or the default one for an
    index in an object store (which cannot be memory-mapped where it is); None: no copies."""
    return cache_root(configured) if configured or is_uri(index) else None


def copy_version(
    source: str | Path, manifest: dict[str, Any], shards: Sequence[int], cache: Path
) -> Path:
    """``<cache>/<version>`` holding the manifest, the trained index and the files of
    ``shards`` of the version at ``source``, each copied and verified once per node."""
    version = str(manifest["version"])
    if not VERSION_RE.match(version):
        raise InputError(f"{source}: manifest names version {version!r}, not a version id")
    local = cache / version
    local.mkdir(parents=True, exist_ok=True)
    wanted = [(n, d) for n, d in listed_files(manifest, shards) if not (local / n).is_file()]
    _check_room(local, source, manifest, shards, len(wanted))
    for name, digest in [(MANIFEST, None), *wanted]:
        copy_file(member(source, name, f"{source} {MANIFEST}"), local / name, digest)
    return local


def copy_file(source: str, target: Path, digest: str | None) -> bool:
    """Copy ``source`` to ``target`` unless it is there; True when this call copied it.

    The copy is checked against ``digest`` (when given) before it gets ``target``'s name; a
    mismatch is an :class:`InputError` naming the source, and no file is left."""
    if target.is_file():
        return False
    with _locked(target):
        if target.is_file():  # another replica on this node copied it meanwhile
            return False
        tmp = temporary_path(target)
        try:
            if is_uri(source):
                download(source, tmp)
            else:
                shutil.copyfile(source, tmp)
            if digest is not None and sha256_file(tmp) != digest:
                raise InputError(
                    f"{source}: checksum mismatch (the file is corrupt or was modified)"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    lock = target.with_name(f".{target.name}{LOCK_SUFFIX}")
    with open(lock, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _check_room(
    local: Path, source: str | Path, manifest: dict[str, Any], shards: Sequence[int], n: int
) -> None:
    """Refuse, naming both sizes, a copy the node's disk cannot hold (estimated from the
    manifest: the shards' rows times their stored bytes per row)."""
    if not n:
        return
    rows = sum(int(manifest["shards"][i]["count"]) for i in shards)
    per_row = 2 * int(manifest["dim"]) + IndexParams.from_dict(manifest["params"]).bytes_per_vector
    need = int(rows * per_row)
    free = shutil.disk_usage(local).free
    if need > free:
        raise InputError(
            f"{local}: {need / 2**30:.1f} GiB needed to copy version {manifest['version']} "
            f"from {source}, {free / 2**30:.1f} GiB free on this node"
        )


def prune(cache: Path, in_use: Iterable[str], keep: int) -> list[str]:
    """Remove the copies of versions beyond the ``keep`` newest, never one ``in_use``
    (version ids sort by time); return the versions removed."""
    if not cache.is_dir():
        return []
    held = set(in_use)
    versions = sorted(p.name for p in cache.iterdir() if VERSION_RE.match(p.name) and p.is_dir())
    removed = [v for v in versions[: max(0, len(versions) - keep)] if v not in held]
    for version in removed:
        shutil.rmtree(cache / version, ignore_errors=True)
    return removed
