"""Raw images to a dataset directory: a .mat frame stack or an image folder, with labels.

Frames are streamed in chunks and written in shards (:class:`~echoseek.data.dataset.DatasetWriter`,
published atomically); every pixel type goes through the one conversion rule of
:mod:`echoseek.ingest.frames`; labels come from a CSV (:mod:`echoseek.ingest.labels`) or, for
folders, from the top-level subfolder names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.data.dataset import DatasetWriter, Row
from echoseek.errors import ConfigError, InputError
from echoseek.ingest.folders import MAX_PIXELS, check_pixels, list_images, load_image
from echoseek.ingest.frames import Scaling, needs_range, scan_range, to_uint8
from echoseek.ingest.labels import LabelMatch, match_files, match_frames
from echoseek.ingest.mat import MatStack, open_mat_stack


@dataclass(frozen=True)
class LabelSpec:
    """Where labels come from: a CSV (frame index or file key -> label) or folder names."""

    csv: str | None = None
    index_base: int = 0  # 1 for MATLAB-style frame numbers in the CSV
    strict: bool = False  # error (not a warning) when some items have no label
    from_folders: bool = False


@dataclass(frozen=True)
class WriteSpec:
    """How rows are written: channels forced to 1 or 3 (None keeps the source's), shards."""

    channels: int | None = None
    shard_size: int = 1024
    overwrite: bool = False
    max_pixels: int = MAX_PIXELS  # per image or frame (the rule of ingest.folders)


def ingest(
    src: Path, out: str | Path, *, labels: LabelSpec, write: WriteSpec, **mat: Any
) -> dict[str, Any]:
    """Ingest ``src`` (an image folder or a .mat file; ``mat``: ``variable``, ``frame_axis``,
    ``chunk_frames``) into ``out``; returns the dataset descriptor."""
    if not src.exists():
        raise InputError(f"{src}: input not found")
    if src.is_dir():
        return ingest_folder(src, out, labels=labels, write=write)
    if src.suffix.lower() == ".mat":
        return ingest_mat(src, out, labels=labels, write=write, **mat)
    raise InputError(f"{src}: expected a .mat file or an image folder")


def ingest_mat(
    path: Path,
    out: str | Path,
    *,
    labels: LabelSpec,
    write: WriteSpec,
    variable: str | None = None,
    frame_axis: int | None = None,
    chunk_frames: int = 64,
) -> dict[str, Any]:
    """Stream a .mat frame stack into a dataset at ``out``; returns its descriptor."""
    stack = open_mat_stack(path, variable, frame_axis)
    height, width = stack.frame_shape
    check_pixels(width, height, f"{path}: frames of '{stack.variable}'", write.max_pixels)
    match = _frame_labels(stack, labels)
    scaling = Scaling()
    if needs_range(stack.dtype):
        scaling = scan_range(stack.iter_chunks(chunk_frames), str(path))
    source = {
        "type": "mat",
        "path": str(path),
        "version": stack.version,
        "variable": stack.variable,
        "matlab_shape": list(stack.matlab_shape),
        "frame_axis": stack.frame_axis,
        "dtype": str(stack.dtype),
        "conversion": scaling.describe(),
        "labels": labels.csv,
    }
    writer = DatasetWriter(out, source, write.shard_size, write.overwrite, _extra(match))
    with writer:
        for index, frame in _frames(stack, scaling, chunk_frames, write.channels):
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


def _frame_labels(stack: MatStack, labels: LabelSpec) -> LabelMatch | None:
    if labels.from_folders:
        raise ConfigError("labels_from_folders applies to image folders, not .mat stacks")
    if labels.csv is None:
        return None
    return match_frames(labels.csv, stack.num_frames, labels.index_base, labels.strict)


def _frames(
    stack: MatStack, scaling: Scaling, chunk_frames: int, channels: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    index = 0
    for chunk in stack.iter_chunks(chunk_frames):
        for frame in to_uint8(chunk, scaling):
            yield index, _channels(frame, channels)
            index += 1


def _channels(frame: np.ndarray, channels: int | None) -> np.ndarray:
    if channels == 3:
        return np.repeat(frame[:, :, None], 3, axis=2)
    return frame


def ingest_folder(
    root: Path, out: str | Path, *, labels: LabelSpec, write: WriteSpec
) -> dict[str, Any]:
    """Ingest every image under ``root`` (recursively) into a dataset at ``out``."""
    listing = list_images(root)
    classes: list[str] = []
    match: LabelMatch | None = None
    if labels.csv is not None:
        match = match_files(labels.csv, listing.files, labels.strict)
    elif labels.from_folders:
        classes = listing.class_names()
        if not classes:
            raise InputError(f"{root}: labels_from_folders=true but no class subfolders")
        index = {name: i for i, name in enumerate(classes)}
        found: list[int | None] = [index.get(f.split("/", 1)[0]) for f in listing.files]
        match = LabelMatch(
            found, [f for f, lab in zip(listing.files, found, strict=True) if lab is None]
        )
    source = {
        "type": "folder",
        "path": str(root),
        "skipped_files": len(listing.skipped),
        "labels": labels.csv,
    }
    extra = _extra(match) | ({"classes": classes} if classes else {})
    writer = DatasetWriter(out, source, write.shard_size, write.overwrite, extra)
    with writer:
        for i, rel in enumerate(listing.files):
            writer.add(
                Row(
                    id=rel,
                    image=load_image(root / rel, write.channels, write.max_pixels),
                    source=rel,
                    label=match.labels[i] if match else None,
                )
            )
    return writer.descriptor()


def _extra(match: LabelMatch | None) -> dict[str, Any]:
    if match is None:
        return {}
    return {"missing_labels": len(match.missing), "missing_label_examples": match.missing[:5]}
