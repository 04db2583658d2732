"""Small dataset dirs for tests: a uint8 frame stack saved as .mat, alternating labels, ingested."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from echoseek.jobs import ingest


def ingested_stack(tmp: Path, frames: np.ndarray, labelled: int, shard_size: int) -> Path:
    """Ingest ``frames`` (H x W x N uint8) with labels ``i % 2`` on the first ``labelled``
    frames (the rest unlabelled) into ``tmp/ds``; returns the dataset dir."""
    scipy.io.savemat(tmp / "d.mat", {"frames": frames})
    rows = "".join(f"{i},{i % 2}\n" for i in range(labelled))
    (tmp / "l.csv").write_text("frame_index,label\n" + rows)
    ingest.run(
        ingest.Config(
            input=str(tmp / "d.mat"),
            labels=str(tmp / "l.csv"),
            output=str(tmp / "ds"),
            shard_size=shard_size,
        )
    )
    return tmp / "ds"


def random_stack(height: int, width: int, count: int, seed: int = 0) -> np.ndarray:
    """Seeded uniform uint8 frames, H x W x N (MATLAB order)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, count), dtype=np.uint8)
