"""Artifact storage: atomic publishing of directories and small files, and SHA-256 checksums.

Every artifact is written into a hidden staging directory next to its destination, flushed to
disk, and renamed into place in one ``os.rename``; a failure anywhere removes the staging
directory, so readers see either the previous artifact or the complete new one, never a
half-written one. Staging and trash directories carry their owner's host and pid in their
names (``.<name>.staging-<host>-<pid>-<hex>``), so the next run on the same output removes those
left behind by a killed run and leaves a live run's alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
    old directory is replaced only after the new one is complete. Stale staging directories of
    earlier, killed runs on the same ``final`` are removed first (:func:`remove_stale`). Any
    exception, ``KeyboardInterrupt`` included, removes the staging directory and the parent
    directories this call created.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise InputError(f"{final}: output path exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise InputError(f"{final}: output directory exists and is not empty (use overwrite=true)")
    created = make_dirs(final.parent)
    remove_stale(final.parent, final.name)
    staging = litter_path(final)
    try:
        staging.mkdir()
        yield staging
        fsync_tree(staging)
        _replace_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty_dirs(created)
        raise


def _replace_dir(staging: Path, final: Path) -> None:
    trash = None
    if final.exists():
        trash = litter_path(final, TRASH)
        os.rename(final, trash)
    os.rename(staging, final)
    fsync_dir(final.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


# Litter: staging and trash directories are named ``.<target>.<kind>-<host>-<pid>-<8 hex>`` next
# to their target, so that the next run on the same output can tell whose they are and remove
# those whose owner is gone (a process killed by SIGKILL never runs its cleanup).
STAGING = "staging"
TRASH = "trash"
STALE_AFTER_S = 24 * 3600.0  # no activity for this long: stale even if the owner is unknown
_LITTER_RE = re.compile(
    r"^\.(?P<target>.+)\.(?P<kind>staging|trash)-(?P<host>[A-Za-z0-9_.-]+)-(?P<pid>\d+)-[0-9a-f]{8}$"
)


@dataclass(frozen=True)
class Litter:
    """A staging or trash directory's owner, parsed from its name."""

    target: str
    kind: str
    host: str
    pid: int


def this_host() -> str:
    """This machine's host name as it appears in litter names (filename-safe, ≤ 64 chars)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "localhost"


def litter_path(final: str | Path, kind: str = STAGING) -> Path:
    """A new ``.<name>.<kind>-<host>-<pid>-<hex>`` path beside ``final`` owned by this process."""
    final = Path(final)
    name = f".{final.name}.{kind}-{this_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return final.parent / name


def parse_litter(name: str) -> Litter | None:
    """The owner of a staging/trash directory name, or None for any other name."""
    m = _LITTER_RE.match(name)
    if m is None:
        return None
    return Litter(m["target"], m["kind"], m["host"], int(m["pid"]))


def is_stale(path: Path, owner: Litter, max_age_s: float = STALE_AFTER_S) -> bool:
    """Whether the run that owns ``path`` is gone.

    On this host: its pid is not alive (a reused pid counts as alive). Elsewhere (a shared
    mount): nothing was written in it for ``max_age_s``. A live owner's directory is never stale.
    """
    if owner.host == this_host():
        return not pid_alive(owner.pid)
    return time.time() - _last_activity(path) > max_age_s


def remove_stale(
    parent: str | Path, target: str | None = None, max_age_s: float = STALE_AFTER_S
) -> list[Path]:
    """Remove stale litter directories in ``parent`` (only ``target``'s when given).

    Each is first renamed to a trash name owned by this process, so a task of the dead run that
    still writes by path fails instead of writing into a half-removed tree. Returns the removed
    directories (their original paths).
    """
    parent = Path(parent)
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for path in entries:
        owner = parse_litter(path.name)
        if owner is None or (target is not None and owner.target != target):
            continue
        if not path.is_dir() or path.is_symlink() or not is_stale(path, owner, max_age_s):
            continue
        trash = litter_path(parent / owner.target, TRASH)
        try:
            os.rename(path, trash)
        except OSError:  # gone already (another run cleaned it) or not ours to move
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(path)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _last_activity(path: Path) -> float:
    """The newest mtime of ``path`` and its direct entries."""
    newest = path.lstat().st_mtime
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def make_dirs(path: str | Path, exist_ok: bool = True) -> list[Path]:
    """``mkdir -p path``; return the directories it created, deepest first. A directory that
    cannot be created is an InputError naming it."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as exc:
        raise InputError(f"{path}: cannot create directory ({_mkdir_reason(path, exc)})") from None
    return missing


def remove_empty_dirs(dirs: Sequence[Path]) -> None:
    """``rmdir`` each of ``dirs`` (deepest first) while it is empty; others are left alone."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


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
    return parse_json_document(path.read_bytes(), str(path), fmt, format_version)


def parse_json_document(data: bytes, where: str, fmt: str, format_version: int) -> dict[str, Any]:
    """:func:`read_json_document` of bytes already read from ``where`` (a path or URI)."""
    try:
        doc = json.loads(data.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        name = where.rstrip("/").rsplit("/", 1)[-1]
        raise InputError(f"{where}: corrupt {name} ({reason})") from None
    path = where
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


def storage_uri(path: str) -> str:
    """Absolute local paths (Ray Train wants them) or a URI passed through."""
    return path if "://" in path else str(Path(path).resolve())


def absolute(path: str) -> str:
    """A local path made absolute on the driver (Train workers run in another directory);
    empty strings and URIs (``s3://``, ``models:/``, ``runs:/``) pass through."""
    return path if not path or ":/" in path else str(Path(path).resolve())
