"""Image folders: recursive listing and decoding to uint8 arrays.

Files with the extensions in :data:`IMAGE_EXTENSIONS` (any case) are images, listed in sorted
relative-path order; other files are skipped and counted. A file with an image extension that
does not decode is an error naming it. Pixel modes are converted so every image is (H, W) or
(H, W, 3) uint8: ``L``/``RGB`` kept, ``1`` to 0/255, ``LA`` to ``L``, ``P``/``RGBA``/``CMYK``/
``YCbCr`` to ``RGB``, 16-bit and float images by the rule in :mod:`echoseek.ingest.frames`.
``channels=1`` or ``3`` forces grayscale or RGB output.

Every image echoseek reads from outside (ingest, ``evaluate query=``, the service) goes through
:func:`decode_image`, which applies the one size rule, :func:`check_pixels`: an image whose
header declares more than ``max_pixels`` pixels (:data:`MAX_PIXELS` by default; 64 MP) is
refused, naming the file, before anything is decoded. Pillow's own guard (twice
``PIL.Image.MAX_IMAGE_PIXELS``) still refuses larger images whatever ``max_pixels`` says; that
is reported the same way.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from echoseek.errors import InputError
from echoseek.ingest.frames import scan_range, to_uint8

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 1 << 26  # 64 MP: far above any frame or photo echoseek indexes


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


def check_pixels(width: int, height: int, where: str, max_pixels: int = MAX_PIXELS) -> None:
    """The size rule for every image read: at most ``max_pixels`` pixels, at least one."""
    if width < 1 or height < 1:
        raise InputError(f"{where}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InputError(
            f"{where}: image of {width}x{height} pixels exceeds the limit of {max_pixels} "
            "(max_pixels)"
        )


def load_image(
    path: str | Path, channels: int | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode one image file to (H, W) or (H, W, 3) uint8 (see :func:`decode_image`)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return decode_image(fh, str(path), channels, max_pixels)
    except OSError as exc:
        raise InputError(f"{path}: cannot read image ({exc.strerror or exc})") from None


def decode_image(
    source: BinaryIO, where: str, channels: int | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode an image from an open binary file (or ``io.BytesIO``) to uint8 pixels.

    The header's size is checked against ``max_pixels`` before decoding; any problem raises
    InputError naming ``where`` (a path, or e.g. ``upload 'a.png'`` for the service).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
        with img:
            check_pixels(img.width, img.height, where, max_pixels)
            img.load()
            array = _to_array(img, where)
    except Image.DecompressionBombError as exc:
        raise InputError(_bomb_message(exc, where, max_pixels)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{where}: not a readable image ({exc})") from None
    if channels == 1 and array.ndim == 3:
        array = np.asarray(Image.fromarray(array).convert("L"))
    elif channels == 3 and array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array)


def _bomb_message(exc: Exception, where: str, max_pixels: int) -> str:
    """Pillow refused the header before echoseek saw the size: say it in the rule's words."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = found.group(1) if found else "more"
    if found is None or int(pixels) > max_pixels:
        return f"{where}: image of {pixels} pixels exceeds the limit of {max_pixels} (max_pixels)"
    return f"{where}: image of {pixels} pixels exceeds Pillow's own limit ({exc})"


def _to_array(img: Image.Image, where: str) -> np.ndarray:
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
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise InputError(f"{where}: {img.mode} pixels contain NaN or infinite values")
    return to_uint8(raw, scan_range([raw], where=where))
