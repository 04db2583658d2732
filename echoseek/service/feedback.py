"""The feedback log: the marks users put on search hits, one JSON line per mark.

There is one log per index root (``<index>/feedback.jsonl`` unless the deploy config names
another file), so it outlives restarts and version swaps; every mark records the version, model
and dataset it was made on. A mark is appended with a single ``write`` to a file opened for
appending, under an exclusive ``flock``, and synced: replicas sharing the file never interleave
or lose lines. A reader skips a last line without its newline (a writer that died mid-write),
and parses only what was appended since its last read.

Exported, the log is a labels CSV (:data:`CSV_COLUMNS`) keyed by the dataset item id
(``item``), which ``echoseek relabel`` applies (last mark wins).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from echoseek.errors import InputError

LOG_NAME = "feedback.jsonl"
MARKS = ("positive", "negative")
CSV_COLUMNS = (
    "item", "label", "mark", "id", "query", "index_version", "model", "dataset_sha256", "time",
)  # fmt: skip


@dataclass(frozen=True)
class Mark:
    """One user's judgement of one hit: ``item`` (the dataset id) is ``label``."""

    item: str
    label: int
    mark: str  # positive | negative
    id: int  # the index's internal id of the item
    query: str  # the query's item id or content hash, as the client names it
    index_version: str
    model: str
    dataset_sha256: str
    time: str  # UTC, ISO 8601


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def default_path(index_root: str) -> Path:
    """Where an index root's feedback log lives unless the deploy config says otherwise."""
    return Path(index_root) / LOG_NAME


class FeedbackLog:
    """Append and read the marks of one log file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._marks: list[Mark] = []  # the file's complete lines read so far
        self._read_to = (0, 0, 0)  # (inode, bytes through the last newline read, lines)

    def append(self, mark: Mark) -> None:
        """Add ``mark`` at the end, durably, whole or not at all."""
        line = (json.dumps(asdict(mark), separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.write(fd, line) != len(line):
                raise OSError(f"{self.path}: short write")
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    def read(self) -> list[Mark]:
        """Every complete mark, oldest first. The log only grows, so only the bytes appended
        since the last read are parsed (all of them again when the file was replaced)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        inode, offset, lines = self._read_to
        if stat.st_ino != inode or stat.st_size < offset:
            self._marks, offset, lines = [], 0, 0
        if stat.st_size > offset:
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]  # a torn tail waits for its newline
            self._marks += parse_log(complete, str(self.path), first_line=lines + 1)
            offset, lines = offset + len(complete), lines + complete.count(b"\n")
        self._read_to = (stat.st_ino, offset, lines)
        return list(self._marks)


def parse_log(data: bytes, where: str, first_line: int = 1) -> list[Mark]:
    """The marks of a log file's bytes (line ``first_line`` on); a torn last line is skipped,
    a corrupt one refused."""
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is empty or torn
    names = {f.name for f in fields(Mark)}
    out = []
    for lineno, raw in enumerate(complete, start=first_line):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if set(record) != names:
                raise ValueError(f"fields {sorted(record)}")
            out.append(Mark(**record))
        except (ValueError, TypeError) as exc:
            raise InputError(f"{where}:{lineno}: not a feedback mark ({exc})") from None
    return out


def read_log_file(path: str | Path) -> list[Mark]:
    """The marks of a feedback log file (a clear error when it is missing)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: feedback log not found")
    return FeedbackLog(path).read()


def to_csv(marks: Sequence[Mark]) -> str:
    """The labels CSV of ``marks`` (:data:`CSV_COLUMNS`), oldest first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in marks:
        record: dict[str, Any] = asdict(m)
        writer.writerow([record[c] for c in CSV_COLUMNS])
    return buf.getvalue()
