"""Atomic publication of index versions under an index root, and retention.

Layout of an index root::

    index/
      LATEST                          the current version id (one line)
      v20250101T120000123456-ab12cd/  one directory per version (manifest.json + files)
      v20250102T090000654321-cd34ef/

A version is written into ``<root>/.staging-<version>/``, every file is fsync'ed, and the
directory is renamed to ``<root>/<version>/`` in one ``os.rename``; then ``LATEST`` is
replaced atomically (temporary file + rename). A failure before the rename removes the staging
directory, so readers never see a partial version and ``LATEST`` always names a complete one.
Versions beyond ``retention`` (newest first, never the one ``LATEST`` names) are removed.
"""

from __future__ import annotations

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
from echoseek.storage import fsync_dir, fsync_tree, make_dirs, write_bytes_atomic

LATEST = "LATEST"
STAGING_PREFIX = ".staging-"
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
    """Yield ``<root>/.staging-<version>/``; publish it as ``<root>/<version>`` on success.

    ``LATEST`` then names the new version unless ``move_latest`` is false.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: index root exists and is not a directory")
    make_dirs(root)
    staging = root / f"{STAGING_PREFIX}{version}"
    staging.mkdir()
    try:
        yield staging
        if not (staging / MANIFEST).is_file():
            raise RuntimeError(f"{staging}: no {MANIFEST} written; refusing to publish")
        fsync_tree(staging)
        os.rename(staging, root / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(root)
    if move_latest:
        write_latest(root, version)
    apply_retention(root, retention)


def write_latest(root: str | Path, version: str) -> None:
    """Point ``LATEST`` at ``version`` atomically."""
    write_bytes_atomic(Path(root) / LATEST, f"{version}\n".encode())


def read_latest(root: str | Path) -> str:
    """The version id ``LATEST`` names (checked to exist)."""
    path = Path(root) / LATEST
    if not path.is_file():
        raise InputError(f"{root}: not an index root (no {LATEST}; run echoseek index build)")
    version = path.read_text().strip()
    if not (Path(root) / version / MANIFEST).is_file():
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
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if VERSION_RE.match(p.name) and (p / MANIFEST).is_file()
    )


def apply_retention(root: str | Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` versions (``keep <= 0`` keeps all); never LATEST's."""
    if keep <= 0:
        return []
    root = Path(root)
    latest = (root / LATEST).read_text().strip() if (root / LATEST).is_file() else ""
    versions = list_versions(root)
    removed = [v for v in versions[: max(0, len(versions) - keep)] if v != latest]
    for version in removed:
        trash = root / f".trash-{version}"
        os.rename(root / version, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return removed
