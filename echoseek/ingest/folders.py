"""Image folders: recursive listing and decoding to uint8 arrays.

Files with the extensions in :data:`IMAGE_EXTENSIONS` (any case) are images, listed in sorted
relative-path order; other files are skipped and counted. A file with an image extension that
does not decode is an error naming it. Pixel modes are converted so every image is (H, W) or
(H, W, 3) uint8: ``L``/``RGB`` kept, ``1`` to 0/255, ``LA`` to ``L``, ``P``/``RGBA``/``CMYK``/
``YCbCr`` to ``RGB``, 16-bit and float images by the rule in :mod:`echoseek.ingest.frames`.
``channels=1`` or ``3`` forces grayscale or RGB output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from echoseek.errors import InputError
from echoseek.ingest.frames import scan_range, to_uint8

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class FolderListing:
    """Images found under a root, as relative POSIX paths, plus the skipped files."""

    root: Path
    files: list[str]
    skipped: list[str]

    def class_names(self) -> list[str]:
        """Sorted names of the top-level subfolders that hold images."""
        return sorted({f.split("/", 1)[0] for f in self.files if "/" in f})


def list_images(root: str | Path) -> FolderListing:
    """Recursively list image files under ``root`` (sorted, hidden entries skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files: list[str] = []
    skipped: list[str] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or not path.is_file():
            continue
        (files if path.suffix.lower() in IMAGE_EXTENSIONS else skipped).append(rel)
    if not files:
        raise InputError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return FolderListing(root, files, skipped)


def load_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Decode one image file to (H, W) or (H, W, 3) uint8."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            array = _to_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None
    if channels == 1 and array.ndim == 3:
        array = np.asarray(Image.fromarray(array).convert("L"))
    elif channels == 3 and array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array)


def _to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("L", "RGB"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode == "LA":
        return np.asarray(img.convert("L"))
    if img.mode in ("P", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"))
    raw = np.asarray(img)  # I;16, I, F: one image is its own stack for the conversion rule
    if raw.ndim != 2:
        raise ValueError(f"unsupported image mode {img.mode}")
    return to_uint8(raw, scan_range([raw], where=img.mode))
