"""Labels CSV files like the team's ``dataset_labels.csv``.

A labels file has two columns: a key and an integer label. A header row is optional; when
present, the key column is the one named ``frame_index``, ``frame``, ``index``, ``id``,
``file``, ``filename``, ``image`` or ``path`` and the label column is ``label`` (any case).
Without a header the first column is the key and the second the label.

For a ``.mat`` stack the key is a frame index (0-based by default; ``index_base=1`` for
MATLAB-style numbering). For an image folder the key is the file's path relative to the folder
(``a/b.png``), its file name (``b.png``) or its stem (``b``).

Problems are reported with the CSV line number: non-integer labels (or ones beyond int64),
duplicate keys, keys that match no item (unknown ids) and, when ``strict``, items without a
label (missing ids).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from echoseek.errors import InputError

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # labels are stored as Parquet int64
KEY_COLUMNS = ("frame_index", "frame", "index", "id", "file", "filename", "image", "path")


@dataclass(frozen=True)
class LabelMatch:
    """Labels aligned to dataset items plus what did not line up."""

    labels: list[int | None]
    missing: list[str]

    @property
    def num_labelled(self) -> int:
        """Items that received a label."""
        return sum(label is not None for label in self.labels)


def read_labels_csv(
    path: str | Path, keys: Sequence[str] = KEY_COLUMNS
) -> list[tuple[int, str, int]]:
    """Parse a labels CSV into ``(line_number, key, label)`` rows; with a header, the key is
    the first column named in ``keys``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: labels file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read labels file ({exc})") from None
    rows = [r for r in csv.reader(text.splitlines()) if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"{path}: labels file is empty")
    key_col, label_col, first = _columns(path, rows[0], keys)
    out: list[tuple[int, str, int]] = []
    for lineno, row in enumerate(rows[first:], start=first + 1):
        if len(row) <= max(key_col, label_col):
            raise InputError(f"{path}:{lineno}: expected at least 2 columns, got {len(row)}")
        key, raw = row[key_col].strip(), row[label_col].strip()
        try:
            label = int(raw)
        except ValueError:
            raise InputError(f"{path}:{lineno}: label '{raw}' is not an integer") from None
        if not INT64_MIN <= label <= INT64_MAX:
            raise InputError(f"{path}:{lineno}: label {raw} does not fit in a 64-bit integer")
        out.append((lineno, key, label))
    if not out:
        raise InputError(f"{path}: labels file has a header but no rows")
    return out


def _columns(path: Path, head: Sequence[str], keys: Sequence[str]) -> tuple[int, int, int]:
    """(key column, label column, index of the first data row)."""
    names = [c.strip().lower() for c in head]
    if len(names) < 2:
        raise InputError(f"{path}:1: expected 2 columns (key, label), got {len(names)}")
    try:
        int(names[1])
        return 0, 1, 0  # no header
    except ValueError:
        pass
    if "label" not in names:
        raise InputError(f"{path}:1: header has no 'label' column (got {', '.join(names)})")
    found = [i for i, n in enumerate(names) if n in keys]
    if not found:
        raise InputError(
            f"{path}:1: header has no key column (one of {', '.join(keys)}; got {', '.join(names)})"
        )
    return found[0], names.index("label"), 1


def match_frames(
    path: str | Path, num_frames: int, index_base: int = 0, strict: bool = False
) -> LabelMatch:
    """Align a labels CSV to frames ``0..num_frames-1`` of a stack."""
    labels: list[int | None] = [None] * num_frames
    seen: dict[int, int] = {}
    for lineno, key, label in read_labels_csv(path):
        try:
            frame = int(key) - index_base
        except ValueError:
            raise InputError(f"{path}:{lineno}: frame index '{key}' is not an integer") from None
        if not 0 <= frame < num_frames:
            raise InputError(
                f"{path}:{lineno}: unknown id: frame {key} is outside the stack's "
                f"{num_frames} frames (index_base={index_base})"
            )
        if frame in seen:
            raise InputError(
                f"{path}:{lineno}: duplicate frame {key} (first on line {seen[frame]})"
            )
        seen[frame] = lineno
        labels[frame] = label
    return _finish(path, labels, [str(i + index_base) for i in range(num_frames)], strict)


def match_files(path: str | Path, relpaths: Sequence[str], strict: bool = False) -> LabelMatch:
    """Align a labels CSV to image files given by their relative POSIX paths."""
    lookup: dict[str, int] = {}
    ambiguous: set[str] = set()
    for i, rel in enumerate(relpaths):
        name = rel.rsplit("/", 1)[-1]
        for alias in {rel, name, name.rsplit(".", 1)[0]}:
            if alias in lookup and lookup[alias] != i:
                ambiguous.add(alias)
            lookup.setdefault(alias, i)
    labels: list[int | None] = [None] * len(relpaths)
    seen: dict[int, int] = {}
    for lineno, key, label in read_labels_csv(path):
        if key in ambiguous and key not in relpaths:
            raise InputError(f"{path}:{lineno}: id '{key}' matches several files; use its path")
        if key not in lookup:
            raise InputError(f"{path}:{lineno}: unknown id '{key}' (no such image in the folder)")
        item = lookup[key]
        if item in seen:
            raise InputError(f"{path}:{lineno}: duplicate id '{key}' (first on line {seen[item]})")
        seen[item] = lineno
        labels[item] = label
    return _finish(path, labels, list(relpaths), strict)


def _finish(
    path: str | Path, labels: list[int | None], names: Sequence[str], strict: bool
) -> LabelMatch:
    missing = [n for n, label in zip(names, labels, strict=True) if label is None]
    if missing and strict:
        raise InputError(
            f"{path}: {len(missing)} items have no label (missing ids, e.g. {missing[0]})"
        )
    return LabelMatch(labels=labels, missing=missing)
