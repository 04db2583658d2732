"""Apply label corrections to a dataset as a new dataset version (the source is not edited).

    echoseek relabel input=work/dataset corrections=feedback.csv output=work/dataset-r1

``corrections`` is a labels CSV keyed by item id: the export of the service's feedback log
(``GET /v1/feedback``, ``echoseek feedback export``) or the page's download. An item's last
mark wins; items marked with different labels are reported as conflicts; an id that is not in
``input`` is an error and publishes nothing. ``output``'s ``dataset.json`` records the
provenance (``relabel``: the source's sha256, the corrections file's sha256, labels changed).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from echoseek.data.dataset import read_descriptor
from echoseek.errors import ConfigError
from echoseek.ingest.relabel import relabel
from echoseek.jobs.runner import run_job


@dataclass
class Config:
    """Options of ``echoseek relabel``."""

    input: str = ""  # the source dataset directory (never modified)
    corrections: str = ""  # a labels CSV keyed by item id (column item, or id)
    output: str = ""  # the new dataset directory
    overwrite: bool = False


def run(cfg: Config) -> dict[str, Any]:
    """Publish ``cfg.output``; returns the provenance plus the new dataset's sha256."""
    for name in ("input", "corrections", "output"):
        if not getattr(cfg, name):
            raise ConfigError(f"{name} is required")
    provenance = relabel(cfg.input, cfg.corrections, cfg.output, overwrite=cfg.overwrite)
    desc = read_descriptor(cfg.output)
    return {
        **provenance,
        "output": cfg.output,
        "sha256": desc["sha256"],
        "count": desc["count"],
        "label_counts": desc["label_counts"],
    }


def summarize(s: dict[str, Any]) -> str:
    """What changed, and the conflicts when there are any."""
    lines = [
        f"published {s['output']}: {s['changed']} of {s['count']} labels changed by "
        f"{s['marks']} marks of {s['items_marked']} items; label counts {s['label_counts']}"
    ]
    if s["conflicts"]:
        shown = ", ".join(f"{c['item']} {c['labels']}" for c in s["conflicting"][:5])
        more = f" (+{s['conflicts'] - 5} more)" if s["conflicts"] > 5 else ""
        lines.append(
            f"{s['conflicts']} item(s) marked with different labels, last mark kept: {shown}{more}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek relabel") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
