"""Ingest raw images into a dataset directory (Parquet shards + ``dataset.json``).

    echoseek ingest input=work/phantom/dataset.mat labels=work/phantom/dataset_labels.csv \\
        output=work/dataset
    echoseek ingest input=photos/ labels_from_folders=true output=work/photos
    python -m echoseek.jobs.ingest ray_jobs/ingest.yaml

``input`` is a MATLAB ``.mat`` file (v5 or v7.3) holding a 3-D frame stack, or a folder of
images (searched recursively). Frames are streamed in chunks and written in shards of
``shard_size`` rows; the dataset appears at ``output`` only when the whole ingest succeeded.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoseek.errors import ConfigError
from echoseek.ingest.build import LabelSpec, WriteSpec, ingest
from echoseek.ingest.folders import MAX_PIXELS
from echoseek.jobs.runner import run_job


@dataclass
class Config:
    """Options of ``echoseek ingest``."""

    input: str = ""
    output: str = "work/dataset"
    labels: str | None = None  # labels CSV (frame index or file id -> integer label)
    labels_index_base: int = 0  # 1 for MATLAB-style frame numbers in the CSV
    labels_strict: bool = False  # error (not a warning) when some items have no label
    labels_from_folders: bool = False  # image folders: label = index of the top subfolder
    variable: str | None = None  # .mat variable; auto when the file holds one 3-D array
    frame_axis: int | None = None  # MATLAB axis of the frames; auto when unambiguous
    channels: int | None = None  # force 1 (grayscale) or 3 (RGB); None keeps the source's
    chunk_frames: int = 64  # frames read per chunk from a .mat stack
    shard_size: int = 1024  # rows per Parquet shard
    max_pixels: int = MAX_PIXELS  # larger images (or .mat frames) are refused, naming the file
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if self.chunk_frames <= 0:
            raise ConfigError(f"chunk_frames must be positive, got {self.chunk_frames}")
        if self.shard_size <= 0:
            raise ConfigError(f"shard_size must be positive, got {self.shard_size}")
        if self.max_pixels <= 0:
            raise ConfigError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.labels is not None and self.labels_from_folders:
            raise ConfigError("use either labels=CSV or labels_from_folders=true, not both")


def run(cfg: Config) -> dict[str, Any]:
    """Ingest ``cfg.input`` into ``cfg.output``; returns the dataset descriptor."""
    if not cfg.input:
        raise ConfigError("input is required (a .mat file or an image folder)")
    labels = LabelSpec(
        cfg.labels, cfg.labels_index_base, cfg.labels_strict, cfg.labels_from_folders
    )
    write = WriteSpec(cfg.channels, cfg.shard_size, cfg.overwrite, cfg.max_pixels)
    return ingest(
        Path(cfg.input),
        cfg.output,
        labels=labels,
        write=write,
        variable=cfg.variable,
        frame_axis=cfg.frame_axis,
        chunk_frames=cfg.chunk_frames,
    )


def summarize(desc: dict[str, Any]) -> str:
    """One short paragraph for the terminal."""
    counts = ", ".join(f"{k}: {v}" for k, v in desc["label_counts"].items()) or "none"
    lines = [
        f"ingested {desc['count']} images from {desc['source']['path']} "
        f"into {len(desc['shards'])} shard(s)",
        f"labels: {counts} ({desc['labelled']} labelled)",
        f"sha256: {desc['sha256'][:16]}...",
    ]
    if desc.get("missing_labels"):
        lines.append(
            f"warning: {desc['missing_labels']} items have no label "
            f"(e.g. {', '.join(desc['missing_label_examples'])})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek ingest") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
