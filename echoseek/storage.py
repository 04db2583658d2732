"""Artifact storage: atomic publishing of directories and small files, and SHA-256 checksums.

Every artifact is written into a hidden staging directory next to its destination, flushed to
disk, and renamed into place in one ``os.rename``; a failure anywhere removes the staging
directory, so readers see either the previous artifact or the complete new one, never a
half-written one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from echoseek.errors import InputError


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root`` and the directories themselves."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """fsync a directory so that renames and new entries in it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory that becomes ``final`` when the block succeeds.

    An existing non-empty ``final`` is an error unless ``overwrite`` is set, in which case the
    old directory is replaced only after the new one is complete.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise InputError(f"{final}: output path exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise InputError(f"{final}: output directory exists and is not empty (use overwrite=true)")
    make_dirs(final.parent)
    staging = final.parent / f".staging-{final.name}-{uuid.uuid4().hex[:8]}"
    make_dirs(staging, exist_ok=False)
    try:
        yield staging
        fsync_tree(staging)
        _replace_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_dir(staging: Path, final: Path) -> None:
    trash = None
    if final.exists():
        trash = final.parent / f".trash-{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, trash)
    os.rename(staging, final)
    fsync_dir(final.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def make_dirs(path: Path, exist_ok: bool = True) -> None:
    """``mkdir -p path``; a directory that cannot be created is an InputError naming it."""
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as exc:
        raise InputError(f"{path}: cannot create directory ({_mkdir_reason(path, exc)})") from None


def check_output_dir(path: str | Path) -> None:
    """Fail early, before any work, when ``path`` cannot become an output directory.

    The path must be a directory or not exist yet; then its nearest existing ancestor must be
    a directory in which a directory can be created (tried with a probe that is removed at
    once, since permissions alone do not tell for root, read-only mounts or ``/proc``).
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path}: output path exists and is not a directory")
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{path}: cannot create directory ({ancestor} is not a directory)")
    probe = ancestor / f".echoseek-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"{path}: cannot create directory ({reason} in {ancestor})") from None
    probe.rmdir()


def _mkdir_reason(path: Path, exc: OSError) -> str:
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            return f"{parent} is not a directory"
    where = f": {exc.filename}" if exc.filename and str(exc.filename) != str(path) else ""
    return f"{exc.strerror or type(exc).__name__}{where}"


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename."""
    path = Path(path)
    make_dirs(path.parent)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json_document(path: Path, fmt: str, format_version: int, missing: str) -> dict[str, Any]:
    """Load a versioned JSON document (descriptor or manifest) and check its header.

    The document must be a JSON object with ``"format": fmt`` and ``"format_version":
    format_version``; ``missing`` is the message (after the parent dir) when the file is absent.
    Every failure is an :class:`InputError` naming the file.
    """
    if not path.is_file():
        raise InputError(f"{path.parent}: {missing}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise InputError(f"{path}: corrupt {path.name} ({reason})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise InputError(f"{path}: not an {fmt} document")
    if doc.get("format_version") != format_version:
        raise InputError(
            f"{path}: format_version {doc.get('format_version')} is not supported "
            f"(this echoseek reads {format_version})"
        )
    return doc


# Checksums. An artifact's checksum is the SHA-256 of its files' hex digests concatenated in the
# order the descriptor lists them, so it changes when any file's bytes or the file order change.
BLOCK = 1 << 20


def sha256_file(path: str | Path, block: int = BLOCK) -> str:
    """Hex SHA-256 of a file, read in ``block``-byte chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def combined_sha256(digests: Sequence[str]) -> str:
    """SHA-256 of concatenated hex digests (the artifact-level checksum)."""
    return hashlib.sha256("".join(digests).encode()).hexdigest()
