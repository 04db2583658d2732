"""Export the marks users put on search hits as a labels CSV, from a running service or from
a feedback log file.

    echoseek feedback export http://127.0.0.1:8000 output=feedback.csv   # token: $ECHOSEEK_TOKEN
    echoseek feedback export work/index output=feedback.csv              # the index root's log
    echoseek feedback export work/index/feedback.jsonl output=feedback.csv

A service answers ``GET /v1/feedback`` (admin scope); a directory is an index root, whose log is
``feedback.jsonl``. The CSV (oldest mark first, keyed by ``item``) is what ``echoseek relabel
corrections=`` applies. ``output`` is written whole or not at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from echoseek.errors import ConfigError
from echoseek.jobs.runner import run_job
from echoseek.service.client import get_text
from echoseek.service.feedback import default_path, read_log_file, to_csv
from echoseek.storage import write_bytes_atomic

TOKEN_ENV = "ECHOSEEK_TOKEN"


@dataclass
class Config:
    """Options of ``echoseek feedback export``."""

    output_is_file: ClassVar[bool] = True
    source: str = ""  # a service URL, an index root, or a feedback log file
    output: str = ""  # the CSV file to write
    token: str = ""  # an admin token for a service (default: $ECHOSEEK_TOKEN)
    timeout_s: float = 60.0


def export_text(cfg: Config) -> str:
    """The labels CSV of ``cfg.source``."""
    if cfg.source.startswith(("http://", "https://")):
        token = cfg.token or os.environ.get(TOKEN_ENV, "")
        return get_text(cfg.source, "/v1/feedback", token, cfg.timeout_s)
    path = Path(cfg.source)
    return to_csv(read_log_file(default_path(cfg.source) if path.is_dir() else path))


def run(cfg: Config) -> dict[str, Any]:
    """Write the CSV; returns where from, where to and how many marks."""
    if not cfg.source or not cfg.output:
        raise ConfigError("give the source (a service URL, index root or log file) and output=CSV")
    text = export_text(cfg)
    write_bytes_atomic(cfg.output, text.encode())
    return {"source": cfg.source, "output": cfg.output, "marks": len(text.splitlines()) - 1}


def summarize(s: dict[str, Any]) -> str:
    return f"wrote {s['marks']} marks from {s['source']} to {s['output']}"


def main(argv: Sequence[str] | None = None, prog: str = "echoseek feedback export") -> int:
    """Command-line entry point; the first word may be the source itself."""
    args = list(sys.argv[1:] if argv is None else argv)
    if (
        args
        and "=" not in args[0]
        and not args[0].startswith("-")
        and not args[0].endswith((".yaml", ".yml"))
    ):
        args[0] = f"source={args[0]}"
    return run_job(Config, run, args, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
