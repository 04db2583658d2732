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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.data.dataset import DatasetWriter, Row
from echoseek.errors import ConfigError, InputError
from echoseek.ingest.folders import list_images, load_image
from echoseek.ingest.frames import Scaling, needs_range, scan_range, to_uint8
from echoseek.ingest.labels import LabelMatch, match_files, match_frames
from echoseek.ingest.mat import MatStack, open_mat_stack
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
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if self.chunk_frames <= 0:
            raise ConfigError(f"chunk_frames must be positive, got {self.chunk_frames}")
        if self.shard_size <= 0:
            raise ConfigError(f"shard_size must be positive, got {self.shard_size}")
        if self.labels is not None and self.labels_from_folders:
            raise ConfigError("use either labels=CSV or labels_from_folders=true, not both")


def run(cfg: Config) -> dict[str, Any]:
    """Ingest ``cfg.input`` into ``cfg.output``; returns the dataset descriptor."""
    if not cfg.input:
        raise ConfigError("input is required (a .mat file or an image folder)")
    src = Path(cfg.input)
    if not src.exists():
        raise InputError(f"{src}: input not found")
    if src.is_dir():
        return ingest_folder(src, cfg)
    if src.suffix.lower() == ".mat":
        return ingest_mat(src, cfg)
    raise InputError(f"{src}: expected a .mat file or an image folder")


def ingest_mat(path: Path, cfg: Config) -> dict[str, Any]:
    """Stream a .mat frame stack into a dataset."""
    stack = open_mat_stack(path, cfg.variable, cfg.frame_axis)
    match = _frame_labels(stack, cfg)
    scaling = Scaling()
    if needs_range(stack.dtype):
        scaling = scan_range(stack.iter_chunks(cfg.chunk_frames), str(path))
    source = {
        "type": "mat",
        "path": str(path),
        "version": stack.version,
        "variable": stack.variable,
        "matlab_shape": list(stack.matlab_shape),
        "frame_axis": stack.frame_axis,
        "dtype": str(stack.dtype),
        "conversion": scaling.describe(),
        "labels": cfg.labels,
    }
    writer = DatasetWriter(cfg.output, source, cfg.shard_size, cfg.overwrite, _extra(match))
    with writer:
        for index, frame in _frames(stack, scaling, cfg):
            writer.add(
                Row(
                    id=f"{path.stem}:{index:06d}",
                    image=frame,
                    source=path.name,
                    label=match.labels[index] if match else None,
                    frame_index=index,
                )
            )
    return writer.descriptor()


def _frame_labels(stack: MatStack, cfg: Config) -> LabelMatch | None:
    if cfg.labels_from_folders:
        raise ConfigError("labels_from_folders applies to image folders, not .mat stacks")
    if cfg.labels is None:
        return None
    return match_frames(cfg.labels, stack.num_frames, cfg.labels_index_base, cfg.labels_strict)


def _frames(stack: MatStack, scaling: Scaling, cfg: Config) -> Iterator[tuple[int, np.ndarray]]:
    index = 0
    for chunk in stack.iter_chunks(cfg.chunk_frames):
        for frame in to_uint8(chunk, scaling):
            yield index, _channels(frame, cfg.channels)
            index += 1


def _channels(frame: np.ndarray, channels: int | None) -> np.ndarray:
    if channels == 3:
        return np.repeat(frame[:, :, None], 3, axis=2)
    return frame


def ingest_folder(root: Path, cfg: Config) -> dict[str, Any]:
    """Ingest every image under ``root`` (recursively) into a dataset."""
    listing = list_images(root)
    classes: list[str] = []
    match: LabelMatch | None = None
    if cfg.labels is not None:
        match = match_files(cfg.labels, listing.files, cfg.labels_strict)
    elif cfg.labels_from_folders:
        classes = listing.class_names()
        if not classes:
            raise InputError(f"{root}: labels_from_folders=true but no class subfolders")
        index = {name: i for i, name in enumerate(classes)}
        labels: list[int | None] = [index.get(f.split("/", 1)[0]) for f in listing.files]
        match = LabelMatch(
            labels, [f for f, lab in zip(listing.files, labels, strict=True) if lab is None]
        )
    source = {
        "type": "folder",
        "path": str(root),
        "skipped_files": len(listing.skipped),
        "labels": cfg.labels,
    }
    extra = _extra(match) | ({"classes": classes} if classes else {})
    writer = DatasetWriter(cfg.output, source, cfg.shard_size, cfg.overwrite, extra)
    with writer:
        for i, rel in enumerate(listing.files):
            writer.add(
                Row(
                    id=rel,
                    image=load_image(root / rel, cfg.channels),
                    source=rel,
                    label=match.labels[i] if match else None,
                )
            )
    return writer.descriptor()


def _extra(match: LabelMatch | None) -> dict[str, Any]:
    if match is None:
        return {}
    return {"missing_labels": len(match.missing), "missing_label_examples": match.missing[:5]}


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
