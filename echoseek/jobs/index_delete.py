"""Delete ids from an index: a new version whose manifest tombstones them.

    echoseek index delete output=work/index ids=[frame-000012,frame-000013]
    echoseek index delete input=ids_to_delete.txt output=work/index

Ids are the external ids stored with the vectors (dataset ids, or row numbers for ``.npy``
input); ``input`` is an optional text file with one id per line. Searches of the new version
never return a tombstoned id; the vectors stay in the shard files until the next rebuild.
Unknown ids are an error and publish nothing; so are ids that are all deleted already (the
summary counts already-deleted ids given together with new ones).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoseek.errors import ConfigError, InputError
from echoseek.index.manifest import read_manifest
from echoseek.index.publish import read_latest
from echoseek.index.update import delete_ids
from echoseek.jobs.runner import run_job


@dataclass
class Config:
    """Options of ``echoseek index delete``."""

    input: str = ""  # optional text file, one external id per line
    output: str = ""  # the index root
    ids: list[str] = field(default_factory=list)
    retention: int = 3

    def __post_init__(self) -> None:
        if self.retention < 0:
            raise ConfigError(f"retention: must be >= 0, got {self.retention}")


def read_id_file(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of a text file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the id list ({exc.__class__.__name__})") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def run(cfg: Config) -> dict[str, Any]:
    """Publish the latest version minus ``ids``; returns a summary."""
    if not cfg.output:
        raise ConfigError("output is required (the index root)")
    ids = list(cfg.ids) + (read_id_file(cfg.input) if cfg.input else [])
    if not ids:
        raise ConfigError("no ids to delete: give ids=[...] or input=FILE")
    before = read_manifest(Path(cfg.output) / read_latest(cfg.output))
    manifest = delete_ids(cfg.output, ids, retention=cfg.retention)
    deleted = int(before["live"]) - int(manifest["live"])
    return {
        "output": cfg.output,
        "version": manifest["version"],
        "deleted": deleted,
        "already_deleted": len(set(ids)) - deleted,
        "tombstones": len(manifest["tombstones"]),
        "live": manifest["live"],
    }


def summarize(s: dict[str, Any]) -> str:
    """One line for the terminal."""
    skipped = f" ({s['already_deleted']} already deleted)" if s.get("already_deleted") else ""
    return (
        f"published {s['output']}/{s['version']}: {s['deleted']} id(s) deleted{skipped}, "
        f"{s['tombstones']} tombstones in total, {s['live']} live vectors"
    )


def main(argv: Sequence[str] | None = None, prog: str = "echoseek index delete") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
