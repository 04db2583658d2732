"""Write a phantom as the files the team's notebook read, published atomically.

``out_dir`` receives:

* ``dataset.mat``: variable ``frames``, ``H x W x N`` uint8 in MATLAB order (frames along the
  last MATLAB axis). ``v5``: scipy.io.savemat with zlib compression. ``v7.3``: what MATLAB
  writes with ``save -v7.3``, an HDF5 file behind a 512-byte user block that starts with the
  128-byte MAT header (116 bytes of text ``MATLAB 7.3 MAT-file, ...``, 8 bytes of subsystem
  offset, version ``0x0200``, endian mark ``IM``); the dataset is stored column-major as
  MATLAB does, so HDF5 sees it transposed (``N x W x H``), with attribute
  ``MATLAB_class="uint8"``, gzip-compressed in chunks of ``CHUNK_FRAMES`` frames so readers can
  stream it;
* ``dataset_labels.csv``: ``frame_index,label`` rows, 0-based frame index, label 0/1;
* ``dataset_phase_labels.csv``: the same rows with the respiratory-phase class of each frame
  (:mod:`.phase`), the labels to train a retrieval model on;
* ``dataset_anomaly_labels.csv``: the same rows, 1 for a frame an inspector would flag (a
  transient artefact, or a probe-shift or rib-sweep hard negative), else 0: the labels of
  ``echoseek anomaly normal_labels=[0]`` and of a sweep's ``val_auroc``;
* ``invivo.png``: the query, 8-bit grayscale;
* ``phantom.json``: parameters, reference, tolerance, counts, hard negatives, breath holds,
  frames with a transient artefact, file checksums.

Files are written to a staging directory beside ``out_dir`` and renamed into place
(:func:`echoseek.storage.staged_dir`: synced first, stale staging of killed runs removed), so a
failed write leaves nothing behind; an existing non-empty ``out_dir`` is replaced only with
``overwrite=True``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from echoseek.errors import ConfigError, EchoseekError
from echoseek.phantom.cine import Phantom
from echoseek.storage import sha256_file, staged_dir

FORMAT = "echoseek.phantom"
FORMAT_VERSION = 1
MAT_FORMATS = ("v5", "v7.3")
CHUNK_FRAMES = 16
USER_BLOCK = 512
MAT_FILE, LABELS_FILE, PHASE_LABELS_FILE, QUERY_FILE, META_FILE = (
    "dataset.mat",
    "dataset_labels.csv",
    "dataset_phase_labels.csv",
    "invivo.png",
    "phantom.json",
)
ANOMALY_LABELS_FILE = "dataset_anomaly_labels.csv"


def write_phantom(
    phantom: Phantom, out_dir: str | Path, mat_format: str = "v5", overwrite: bool = False
) -> Path:
    """Write ``phantom`` into ``out_dir`` (see the module docstring); returns the directory."""
    if mat_format not in MAT_FORMATS:
        raise ConfigError(f"mat_format: must be one of {list(MAT_FORMATS)}, got {mat_format!r}")
    out = Path(out_dir)
    check_output(out, overwrite)
    with staged_dir(out, overwrite=overwrite) as staging:
        write_mat(staging / MAT_FILE, phantom.frames, mat_format)
        write_labels_csv(staging / LABELS_FILE, phantom.labels)
        write_labels_csv(staging / PHASE_LABELS_FILE, phantom.phase_labels)
        anomalous = phantom.artifact | phantom.hard_negative
        write_labels_csv(staging / ANOMALY_LABELS_FILE, anomalous.astype(np.int64))
        write_png(staging / QUERY_FILE, phantom.query)
        meta = provenance(phantom, mat_format, staging)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty directory unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise EchoseekError(f"output: {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise EchoseekError(
            f"output: {out} exists and is not empty; pass overwrite=true to replace it"
        )


def write_mat(path: Path, frames: np.ndarray, mat_format: str) -> None:
    """Write an NxHxW stack as MATLAB variable ``frames`` of size ``H x W x N``."""
    if mat_format == "v5":
        import scipy.io

        hwn = np.transpose(frames, (1, 2, 0))
        scipy.io.savemat(path, {"frames": hwn}, do_compression=True, format="5")
    else:
        write_mat73(path, frames)


def mat73_header() -> bytes:
    """The 512-byte user block of a MATLAB 7.3 file: MAT header text, version 2, 'IM'."""
    created = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime())
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 ."
    head = text.encode("ascii").ljust(116, b" ") + b" " * 8 + b"\x00\x02" + b"IM"
    return head.ljust(USER_BLOCK, b"\x00")


def write_mat73(path: Path, frames: np.ndarray) -> None:
    """HDF5 with the MATLAB user block; ``frames`` stored N x W x H (column-major H x W x N)."""
    n, height, width = frames.shape
    with h5py.File(path, "w", userblock_size=USER_BLOCK) as f:
        ds = f.create_dataset(
            "frames",
            data=np.ascontiguousarray(np.transpose(frames, (0, 2, 1))),
            chunks=(min(CHUNK_FRAMES, n), width, height),
            compression="gzip",
            compression_opts=3,
        )
        ds.attrs["MATLAB_class"] = np.bytes_(b"uint8")
    with open(path, "r+b") as fh:
        fh.write(mat73_header())


def write_labels_csv(path: Path, labels: np.ndarray) -> None:
    """``frame_index,label`` header, then one 0-based row per frame (any integer label)."""
    rows = "".join(f"{i},{int(label)}\n" for i, label in enumerate(labels))
    path.write_text("frame_index,label\n" + rows)


def write_png(path: Path, image: np.ndarray) -> None:
    """An HxW uint8 array as an 8-bit grayscale PNG."""
    Image.fromarray(image).save(path, format="PNG")


def provenance(phantom: Phantom, mat_format: str, folder: Path) -> dict[str, Any]:
    """The ``phantom.json`` content; checksums of the files already in ``folder``."""
    names = (MAT_FILE, LABELS_FILE, PHASE_LABELS_FILE, ANOMALY_LABELS_FILE, QUERY_FILE)
    files = {name: sha256_file(folder / name) for name in names}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "params": dataclasses.asdict(phantom.params),
        "seed": phantom.params.seed,
        "frames": int(phantom.frames.shape[0]),
        "height": int(phantom.frames.shape[1]),
        "width": int(phantom.frames.shape[2]),
        "mat_format": mat_format,
        "mat_variable": "frames",
        "mat_shape": [int(phantom.frames.shape[1]), int(phantom.frames.shape[2]),
                      int(phantom.frames.shape[0])],
        "positives": phantom.positives,
        "positive_ratio": phantom.positive_ratio,
        "reference_phase_px": phantom.reference_phase,
        "reference_frame": phantom.reference_frame,
        "tolerance_px": phantom.tolerance,
        "tolerance_calibrated": phantom.tolerance_calibrated,
        "label_rule": "positive iff |phase - reference| <= tolerance and no view change",
        "phase_label_rule": "round((phase - reference) / (phase_bin * tolerance)) - min; "
        "one class per hard-negative episode after those",
        "phase_classes": int(phantom.phase_labels.max()) + 1,
        "hard_negative_indices": np.flatnonzero(phantom.hard_negative).tolist(),
        "episodes": [dataclasses.asdict(e) for e in phantom.episodes],
        "breath_hold_indices": np.flatnonzero(phantom.breath_hold).tolist(),
        "artifact_indices": np.flatnonzero(phantom.artifact).tolist(),
        "phase_px": [round(float(v), 4) for v in phantom.phase],
        "sha256": files,
    }  # fmt: skip
