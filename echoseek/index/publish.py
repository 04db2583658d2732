"""Atomic publication of index versions under an index root, and retention.

Layout of an index root::

    index/
      LATEST                          the current version id (one line)
      v20250101T120000123456-ab12cd/  one directory per version (manifest.json + files)
      v20250102T090000654321-cd34ef/

A version is written into ``<root>/.<version>.staging-<host>-<pid>-<hex>/``, every file is
fsync'ed, and the directory is renamed to ``<root>/<version>/`` in one ``os.rename``; then
``LATEST`` is replaced atomically (temporary file + rename). A failure before the rename
(``KeyboardInterrupt`` included) removes the staging directory, and the root itself when this
build created it, so readers never see a partial version, ``LATEST`` always names a complete one
and a failed first build leaves nothing. Staging directories of killed builds (their pid is gone
from this host; see :func:`echoseek.storage.is_stale`) are removed by the next build on the root
and by the retention step. Versions beyond ``retention`` (newest first, never the one ``LATEST``
names) are removed.

An index root in an object store (``s3://…``, :mod:`echoseek.object_store`) has the same
layout, published by order since a store has no rename (:func:`staged_remote_version`): the
version's files are written under its fresh id, its ``manifest.json`` last, then ``LATEST``.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from echoseek.errors import InputError
from echoseek.index.manifest import MANIFEST
from echoseek.object_store import (
    basename,
    delete_tree,
    is_file,
    is_uri,
    join,
    list_files,
    read_bytes,
    write_bytes,
)
from echoseek.storage import (
    STALE_AFTER_S,
    TRASH,
    contained,
    fsync_dir,
    fsync_tree,
    litter_path,
    make_dirs,
    remove_empty_dirs,
    remove_stale,
)

LATEST = "LATEST"
VERSION_RE = re.compile(r"^v\d{8}T\d{12}-[0-9a-f]{6}$")
DEFAULT_RETENTION = 3


def new_version_id() -> str:
    """A sortable, unique version id: ``v<UTC yyyymmddTHHMMSS><µs>-<6 hex>``."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    micros = int((now % 1) * 1_000_000)
    return f"v{stamp}{micros:06d}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def staged_version(
    root: str | Path,
    version: str,
    retention: int = DEFAULT_RETENTION,
    move_latest: bool = True,
) -> Iterator[Path]:
    """Yield a staging directory under ``root``; publish it as ``<root>/<version>`` on success.

    ``LATEST`` then names the new version unless ``move_latest`` is false. On failure nothing
    is left: no staging directory, and no root (nor parents) if this call created them.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: index root exists and is not a directory")
    created = make_dirs(root)
    remove_stale(root)
    staging = litter_path(root / version)
    try:
        staging.mkdir()
        yield staging
        if not (staging / MANIFEST).is_file():
            raise RuntimeError(f"{staging}: no {MANIFEST} written; refusing to publish")
        fsync_tree(staging)
        os.rename(staging, root / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty_dirs(created)
        raise
    fsync_dir(root)
    if move_latest:
        write_latest(root, version)
    apply_retention(root, retention)


@contextlib.contextmanager
def staged_remote_version(
    root: str, version: str, retention: int = DEFAULT_RETENTION, move_latest: bool = True
) -> Iterator[str]:
    """:func:`staged_version` for a root in an object store: yield ``<root>/<version>``.

    The block writes the version's files there, ``manifest.json`` last; no reader looks at a
    fresh version id before ``LATEST`` names it, and no version without a manifest is listed.
    ``LATEST`` is then written (one object, atomic). Any failure deletes the version's prefix.
    Prefixes of killed builds (a version id without a manifest, older than a day) go with the
    retention step.
    """
    prefix = join(root, version)
    try:
        yield prefix
        if not is_file(join(prefix, MANIFEST)):
            raise RuntimeError(f"{prefix}: no {MANIFEST} written; refusing to publish")
    except BaseException:
        delete_tree(prefix)
        raise
    if move_latest:
        write_latest(root, version)
    apply_retention(root, retention)


def staged_anywhere(
    root: str | Path, version: str, retention: int = DEFAULT_RETENTION
) -> contextlib.AbstractContextManager[str | Path]:
    """:func:`staged_version` on a filesystem, :func:`staged_remote_version` in a store."""
    if is_uri(root):
        return staged_remote_version(str(root), version, retention)
    return staged_version(root, version, retention)


def write_latest(root: str | Path, version: str) -> None:
    """Point ``LATEST`` at ``version`` atomically."""
    write_bytes(join(root, LATEST), f"{version}\n".encode())


def read_latest(root: str | Path) -> str:
    """The version id ``LATEST`` names: a version directory directly under ``root``, checked
    to exist (a path, ``..`` or a symlink leading elsewhere is refused)."""
    if is_uri(root):
        return _read_remote_latest(str(root))
    path = Path(root) / LATEST
    if not path.is_file():
        raise InputError(f"{root}: not an index root (no {LATEST}; run echoseek index build)")
    try:
        version = path.read_text().strip()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a version id (not UTF-8 text)") from None
    where = f"{path} entry"
    version_dir = contained(root, version, where)
    if version_dir.resolve().parent != Path(root).resolve() or Path(version).name != version:
        raise InputError(f"{where}: {version!r} is not a version directory directly under {root}")
    if not (version_dir / MANIFEST).is_file():
        raise InputError(f"{path}: names version '{version}' which does not exist")
    return version


def _read_remote_latest(root: str) -> str:
    """:func:`read_latest` in an object store: the one line must be a version id."""
    path = join(root, LATEST)
    if not is_file(path):
        raise InputError(f"{root}: not an index root (no {LATEST}; run echoseek index build)")
    version = read_bytes(path).decode("utf-8", errors="replace").strip()
    if not VERSION_RE.match(version):
        raise InputError(f"{path}: {version[:80]!r} is not a version id")
    if not is_file(join(root, version, MANIFEST)):
        raise InputError(f"{path}: names version '{version}' which does not exist")
    return version


def resolve_version_dir(path: str | Path) -> Path:
    """A version directory given either itself or its index root (via ``LATEST``)."""
    p = Path(path)
    if (p / MANIFEST).is_file():
        return p
    if (p / LATEST).is_file():
        return p / read_latest(p)
    if not p.exists():
        raise InputError(f"{p}: index path not found")
    raise InputError(f"{p}: neither an index root (no {LATEST}) nor a version (no {MANIFEST})")


def list_versions(root: str | Path) -> list[str]:
    """Published version ids under ``root``, oldest first."""
    if is_uri(root):
        return sorted({v for v, name in _remote_entries(str(root)) if name == MANIFEST})
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if VERSION_RE.match(p.name) and (p / MANIFEST).is_file()
    )


def apply_retention(root: str | Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` versions (``keep <= 0`` keeps all); never LATEST's.

    Stale staging and trash directories of killed runs are removed in any case.
    """
    if is_uri(root):
        return _remote_retention(str(root), keep)
    root = Path(root)
    remove_stale(root)
    if keep <= 0:
        return []
    latest = (root / LATEST).read_text().strip() if (root / LATEST).is_file() else ""
    versions = list_versions(root)
    removed = [v for v in versions[: max(0, len(versions) - keep)] if v != latest]
    for version in removed:
        trash = litter_path(root / version, TRASH)
        os.rename(root / version, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return removed


def _remote_retention(root: str, keep: int) -> list[str]:
    """:func:`apply_retention` in an object store: old versions and killed builds' prefixes
    (no manifest, version id older than a day) are deleted; never the one ``LATEST`` names."""
    latest = read_bytes(join(root, LATEST)).decode().strip() if is_file(join(root, LATEST)) else ""
    entries = _remote_entries(root)
    published = sorted({v for v, name in entries if name == MANIFEST})
    dead = {v for v, _ in entries if v not in published and _age_s(v) > STALE_AFTER_S}
    old = set(published[: max(0, len(published) - keep)]) if keep > 0 else set()
    removed = sorted(v for v in old | dead if v != latest)
    for version in removed:
        delete_tree(join(root, version))
    return [v for v in removed if v in old]


def _remote_entries(root: str) -> list[tuple[str, str]]:
    """``(version, file name)`` of every file under a version id directly under ``root``."""
    pairs = [name.partition("/") for name in list_files(root)]
    return [(v, rest) for v, sep, rest in pairs if sep and VERSION_RE.match(v)]


def _age_s(version: str) -> float:
    """Seconds since the UTC time stamped in ``version``'s id."""
    stamp = calendar.timegm(time.strptime(basename(version)[1:16], "%Y%m%dT%H%M%S"))
    return time.time() - stamp
