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
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".staging-{final.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
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


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


# Containment. Descriptors (dataset.json, vectors.json, manifest.json, LATEST) are untrusted
# input: every file they name must stay inside the artifact that names it, so an edited entry
# can never make echoseek read (or checksum, or link) a file elsewhere on the machine.


def contained(root: str | Path, name: Any, where: str) -> Path:
    """``root / name`` when ``name`` is a relative path that resolves inside ``root``.

    ``where`` names the descriptor file and entry for the message (``".../manifest.json
    shards[1].file"``). An absolute path, a ``..`` climbing out, a symlink leading outside, an
    empty or non-string name is an :class:`InputError`. The path is returned as given (under
    ``root``, not resolved) so that messages show the user's own paths.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InputError(f"{where}: expected a file name inside {root}, got {name!r}")
    if Path(name).is_absolute():
        raise InputError(f"{where}: {name!r} is an absolute path; files must be inside {root}")
    path = Path(root) / name
    try:
        base, target = Path(root).resolve(), path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise InputError(f"{where}: {name!r} cannot be resolved ({exc})") from None
    if target == base or not target.is_relative_to(base):
        raise InputError(f"{where}: {name!r} leads outside {root}")
    return path


_VERIFIED: dict[tuple[str, int, int, int, str], None] = {}


def verify_sha256(path: Path, digest: Any, where: str) -> None:
    """Check ``path`` hashes to ``digest``, once per process while its size and mtime hold.

    ``where`` names the descriptor that lists the file. Repeated reads of the same unchanged
    file (a job opening a dataset several times) hash it only once.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, str(digest))
    if key in _VERIFIED:
        return
    if sha256_file(path) != digest:
        raise InputError(
            f"{path}: checksum mismatch with {where} (the file is corrupt or was modified)"
        )
    _VERIFIED[key] = None
