"""Label corrections applied to a dataset, as a new dataset version; the source is never edited.

A corrections file is a labels CSV keyed by the dataset's item ids: the column ``item`` (what
``GET /v1/feedback``, ``echoseek feedback export`` and the page write), or ``id`` when there is
no ``item`` column. Marks apply in file order, so an item's last mark wins; an item marked with
different labels is a *conflict*, reported with its labels in order. An id the dataset does not
hold is an error naming its line.

The new version streams the source's shards row by row, keeps every image byte, id and field
but the label, and records its provenance in ``dataset.json`` under ``relabel``: the source's
path and sha256, the corrections file's path and sha256, how many marks and items it held, how
many labels changed, and the conflicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoseek.data.dataset import DatasetWriter, iter_batches, read_descriptor
from echoseek.errors import InputError
from echoseek.ingest.labels import read_labels_csv
from echoseek.storage import sha256_file

KEYS = ("item", "id")
MAX_LISTED = 100  # conflicts listed in dataset.json (all are counted)


@dataclass(frozen=True)
class Corrections:
    """The final label of each corrected item, and what it took to get there."""

    labels: dict[str, int]  # item id -> its last mark's label
    lines: dict[str, int]  # item id -> the CSV line of its first mark
    marks: int
    conflicts: dict[str, list[int]]  # item id -> its marks' labels in order, when they differ


def read_corrections(path: str | Path) -> Corrections:
    """The corrections of a labels CSV (last mark of an item wins)."""
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    history: dict[str, list[int]] = {}
    rows = read_labels_csv(path, keys=KEYS)
    for lineno, key, label in rows:
        labels[key] = label
        lines.setdefault(key, lineno)
        history.setdefault(key, []).append(label)
    conflicts = {k: v for k, v in history.items() if len(set(v)) > 1}
    return Corrections(labels, lines, len(rows), conflicts)


def relabel(
    source: str | Path,
    corrections_file: str | Path,
    output: str | Path,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Publish ``output``: ``source`` with the labels of ``corrections_file`` applied. Returns
    the provenance written to its ``dataset.json``."""
    source, output = Path(source), Path(output)
    if output.resolve() == source.resolve():
        raise InputError(f"output: {output} is the input dataset; relabel never edits its source")
    desc = read_descriptor(source)
    fixes = read_corrections(corrections_file)
    shard_size = int(desc["shards"][0]["rows"]) or 1024
    origin = {"kind": "relabel", "path": str(source.resolve()), "source": desc.get("source")}
    seen: set[str] = set()
    changed = 0
    with DatasetWriter(output, origin, shard_size=shard_size, overwrite=overwrite) as writer:
        for batch in iter_batches(source):
            for record in batch.to_pylist():
                item = str(record["id"])
                if item in fixes.labels:
                    seen.add(item)
                    changed += record["label"] != fixes.labels[item]
                    record["label"] = fixes.labels[item]
                writer.add_encoded(record)
        unknown = sorted(set(fixes.labels) - seen, key=fixes.lines.__getitem__)
        if unknown:
            first = unknown[0]
            raise InputError(
                f"{corrections_file}:{fixes.lines[first]}: unknown id '{first}' (not an item of "
                f"{source}; {len(unknown)} unknown in all)"
            )
        provenance = {
            "source": str(source.resolve()),
            "source_sha256": desc["sha256"],
            "corrections": str(Path(corrections_file).resolve()),
            "corrections_sha256": sha256_file(corrections_file),
            "marks": fixes.marks,
            "items_marked": len(fixes.labels),
            "changed": changed,
            "conflicts": len(fixes.conflicts),
            "conflicting": [
                {"item": k, "labels": v} for k, v in list(fixes.conflicts.items())[:MAX_LISTED]
            ],
        }
        writer.extra["relabel"] = provenance
    return provenance
