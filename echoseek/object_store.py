"""Artifacts in an object store (``s3://``, ``gs://``) beside local paths, via ``pyarrow.fs``.

A *target* is a local path or a URI ``scheme://bucket/key``. Every function here takes either,
so the embed job and the index build read and write one way whatever their ``input=`` and
``output=`` are. Credentials and endpoints come from the environment, read the way the store's
own tools read them (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, instance roles; ``GOOGLE_APPLICATION_CREDENTIALS``), in every process
that opens a URI: the driver and the Ray workers on every node.

An object store has no rename, but one object's write is atomic: a reader sees all of it or
none. So an artifact is published by order: its data objects first, under names no reader
looks for yet, then the one small object that makes them visible: a vectors artifact's
``vectors.json``, an index version's ``manifest.json``, then the index root's ``LATEST``.

Tasks write a file on node-local scratch (:func:`writing`) and upload it whole when complete;
they read a whole file through a node-local copy (:func:`local_copy`), or seek in it in place
(:func:`open_input`). Uploads and downloads use ``pyarrow.fs.copy_files`` (multipart, several
streams).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from echoseek.errors import ConfigError, InputError
from echoseek.storage import BLOCK, contained, sha256_file, staged_dir, write_bytes_atomic

LOCAL = pafs.LocalFileSystem()


def is_uri(target: str | Path) -> bool:
    """Whether ``target`` is an object-store URI (``scheme://…``, not ``file://``)."""
    text = str(target)
    return "://" in text and text.split("://", 1)[0].lower() != "file"


def join(base: str | Path, *names: str) -> str:
    """``base/name/…`` of a local path or a URI (not ``Path``: it folds ``s3://`` to ``s3:/``)."""
    if is_uri(base):
        return "/".join([str(base).rstrip("/"), *names])
    return str(Path(base, *names))


def basename(target: str | Path) -> str:
    """The last component of a path or URI."""
    return str(target).rstrip("/").rsplit("/", 1)[-1]


def resolve(target: str | Path, field: str = "") -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``target`` and the path on it. A URI no installed filesystem
    opens (an unknown scheme, a malformed URI) is a :class:`ConfigError` naming ``field``."""
    if not is_uri(target):
        return LOCAL, str(Path(target).resolve())
    text = str(target)
    scheme, rest = text.split("://", 1)
    bucket = rest.split("/", 1)[0]
    if not bucket:
        raise ConfigError(f"{_where(field)}{text}: no bucket in the URI ({scheme}://BUCKET/KEY)")
    fs = _filesystem(scheme.lower(), bucket, field)
    return fs, rest.rstrip("/")


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, bucket: str, field: str) -> pafs.FileSystem:
    uri = f"{scheme}://{bucket}"
    try:
        fs, _ = pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # ArrowInvalid (unknown scheme), OSError (no credentials)
        raise ConfigError(
            f"{_where(field)}{uri}: no installed filesystem opens this URI ({exc}); "
            "echoseek reads s3:// and gs:// through pyarrow.fs, or a path every node mounts"
        ) from None
    return fs


def _where(field: str) -> str:
    return f"{field}: " if field else ""


def check_bucket(target: str | Path, field: str) -> None:
    """Fail before any work when ``target``'s bucket does not exist or cannot be written:
    a probe object is written and removed (permissions alone do not tell)."""
    if not is_uri(target):
        return
    fs, path = resolve(target, field)
    bucket = path.split("/", 1)[0]
    probe = f"{path}/.echoseek-probe-{uuid.uuid4().hex[:8]}"
    try:
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise ConfigError(f"{field}: {target}: bucket '{bucket}' does not exist")
        with fs.open_output_stream(probe) as out:
            out.write(b"")
        fs.delete_file(probe)
    except OSError as exc:
        raise ConfigError(f"{field}: {target}: cannot write there ({_reason(exc)})") from None


def check_location(target: str, field: str, output: bool = False) -> None:
    """Fail early on a URI no installed filesystem opens and, for an ``output``, on a bucket
    that is missing or cannot be written. Local paths pass (their own checks follow)."""
    if is_uri(target):
        resolve(target, field)
        if output:
            check_bucket(target, field)


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def exists(target: str | Path) -> bool:
    """Whether a file or directory (a prefix with objects) is at ``target``."""
    fs, path = resolve(target)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(target: str | Path) -> bool:
    """Whether a file (object) is at ``target``."""
    fs, path = resolve(target)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_bytes(target: str | Path) -> bytes:
    """The whole file at ``target``; a missing one is an :class:`InputError` naming it."""
    if not is_uri(target):
        return Path(target).read_bytes()
    fs, path = resolve(target)
    try:
        with fs.open_input_stream(path) as f:
            return bytes(f.read())
    except FileNotFoundError:
        raise InputError(f"{target}: not found") from None


def write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically: temporary file and rename on a filesystem,
    one object write in a store."""
    if not is_uri(target):
        write_bytes_atomic(target, data)
        return
    fs, path = resolve(target)
    with fs.open_output_stream(path) as out:
        out.write(data)


def open_input(target: str | Path) -> IO[bytes]:
    """``target`` opened for reading with ``seek`` (ranged reads in a store)."""
    if not is_uri(target):
        return open(target, "rb")
    fs, path = resolve(target)
    return fs.open_input_file(path)  # type: ignore[no-any-return]


def sha256(target: str | Path, block: int = BLOCK) -> str:
    """Hex SHA-256 of the file at ``target``, streamed in ``block``-byte reads."""
    if not is_uri(target):
        return sha256_file(target, block)
    digest = hashlib.sha256()
    fs, path = resolve(target)
    with fs.open_input_stream(path) as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def scratch_dir() -> Path:
    """Node-local scratch for files on their way to or from a store (``ECHOSEEK_SCRATCH``, else
    the system's temporary directory)."""
    root = Path(os.environ.get("ECHOSEEK_SCRATCH") or tempfile.gettempdir()) / "echoseek-scratch"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def writing(target: str | Path) -> Iterator[Path]:
    """A local path to write ``target``'s new content to; on success it becomes ``target``
    whole (renamed beside it, or uploaded from node-local scratch), on failure it is removed
    and ``target`` is untouched."""
    if is_uri(target):
        tmp = scratch_dir() / f"{uuid.uuid4().hex}-{basename(target)}"
    else:
        tmp = temporary_path(Path(target))
    try:
        yield tmp
        if is_uri(target):
            upload(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def temporary_path(final: Path) -> Path:
    """A unique name beside ``final`` for one attempt to write it (``.<name>.<pid>-<hex>.tmp``)."""
    return final.with_name(f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def upload(local: str | Path, target: str | Path) -> None:
    """Copy the local file ``local`` to ``target``."""
    fs, path = resolve(target)
    pafs.copy_files(str(local), path, source_filesystem=LOCAL, destination_filesystem=fs)


def download(target: str | Path, local: str | Path) -> None:
    """Copy the file ``target`` to the local path ``local``."""
    fs, path = resolve(target)
    pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=LOCAL)


@contextlib.contextmanager
def local_copy(target: str | Path) -> Iterator[Path]:
    """A local path holding ``target``'s content for the block: the file itself on a
    filesystem, a node-local download (removed afterwards) from a store."""
    if not is_uri(target):
        yield Path(target)
        return
    tmp = scratch_dir() / f"{uuid.uuid4().hex}-{basename(target)}"
    try:
        download(target, tmp)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def list_files(prefix: str | Path, recursive: bool = True) -> list[str]:
    """The files under ``prefix`` (directly in it unless ``recursive``), as names relative to
    it (``a/b.parquet``), sorted."""
    fs, path = resolve(prefix)
    selector = pafs.FileSelector(path, recursive=recursive, allow_not_found=True)
    files = [i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
    return sorted(str(PurePosixPath(f).relative_to(path)) for f in files)


def delete_tree(prefix: str | Path) -> None:
    """Remove everything under ``prefix`` (nothing there is not an error)."""
    fs, path = resolve(prefix)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return
    fs.delete_dir(path)


def download_tree(prefix: str | Path, local_dir: str | Path) -> Path:
    """Copy every file under ``prefix`` into ``local_dir`` (created); returns it."""
    fs, path = resolve(prefix)
    Path(local_dir).mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(local_dir), source_filesystem=fs, destination_filesystem=LOCAL)
    return Path(local_dir)


def member(root: str | Path, name: Any, where: str) -> str:
    """``root/name`` when ``name`` stays inside ``root`` (:func:`echoseek.storage.contained`
    for a local root; for a URI, a relative key without ``..``, empty or ``.`` parts), so a
    descriptor's entry never reaches another key of the bucket."""
    if not is_uri(root):
        return str(contained(root, name, where))
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise InputError(f"{where}: expected a file name inside {root}, got {name!r}")
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"{where}: {name!r} is not a relative name inside {root}")
    return join(root, name)


@contextlib.contextmanager
def local_files(root: str | Path, names: list[str], where: str) -> Iterator[Path]:
    """A local directory holding ``root``'s files ``names`` for the block: ``root`` itself on
    a filesystem; from a store, node-local downloads of just those files, removed afterwards
    (``where`` names the list the names came from, for :func:`member`)."""
    if not is_uri(root):
        yield Path(root)
        return
    local = Path(tempfile.mkdtemp(prefix="copy-", dir=scratch_dir()))
    try:
        for name in names:
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            download(member(root, name, where), local / name)
        yield local
    finally:
        shutil.rmtree(local, ignore_errors=True)


def parquet_file(target: str | Path) -> pq.ParquetFile:
    """A Parquet file opened for its metadata and row groups (ranged reads in a store)."""
    return pq.ParquetFile(open_input(target) if is_uri(target) else target)


@dataclass(frozen=True)
class Staged:
    """Where a staged artifact's files go while it is written.

    ``parts``: the folder or prefix the data files are written to; ``root``: where the
    descriptor goes, last; ``prefix``: what the descriptor puts before a part's name.
    """

    parts: str
    root: str
    prefix: str


@contextlib.contextmanager
def staged_artifact(final: str | Path, overwrite: bool = False) -> Iterator[Staged]:
    """An artifact directory written whole or not at all, on a filesystem or in a store.

    On a filesystem: :func:`echoseek.storage.staged_dir` (a staging directory renamed into
    place). In a store: the data files go under a fresh ``parts-<hex>/`` prefix inside
    ``final``, the block writes the descriptor into ``final`` last (one object write makes
    the new artifact visible), then the files no longer listed (an overwritten artifact's)
    are deleted; a failure deletes the new prefix and leaves the old artifact as it was.
    """
    if not is_uri(final):
        with staged_dir(final, overwrite=overwrite) as staging:
            yield Staged(str(staging), str(staging), "")
        return
    check_bucket(final, "output")
    before = list_files(final)
    if before and not overwrite:
        raise InputError(f"{final}: output exists and is not empty (use overwrite=true)")
    prefix = f"parts-{uuid.uuid4().hex[:12]}/"
    parts = join(final, prefix.rstrip("/"))
    try:
        yield Staged(parts, str(final), prefix)
    except BaseException:
        delete_tree(parts)
        raise
    fs, path = resolve(final)
    for name in before:
        if "/" in name:  # an overwritten artifact's parts (its descriptor was replaced)
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(f"{path}/{name}")
