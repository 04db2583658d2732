"""Query images from clients: PNG or JPEG bytes (or base64 of them) -> uint8 arrays.

The pixel count is read from the header before any decoding, so a decompression bomb (a
small file that expands to gigapixels) is refused without allocating it. Anything that is not
a readable PNG/JPEG is a :class:`QueryError` (answered 4xx), never an exception from PIL.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from echoseek.errors import EchoseekError

FORMATS = ("PNG", "JPEG")


class QueryError(EchoseekError):
    """A request the client must change: answered with ``status`` and this message."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def decode_base64(text: str, max_bytes: int) -> bytes:
    """The bytes of a base64 string (standard alphabet, padding required)."""
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise QueryError(f"image: larger than {max_bytes} bytes", 413, "too_large")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise QueryError("image: not valid base64") from None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """An (H, W) or (H, W, 3) uint8 array from PNG/JPEG bytes of at most ``max_pixels``."""
    if not data:
        raise QueryError("image: empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = img.size
            if width * height > max_pixels:
                raise QueryError(
                    f"image: {width}×{height} pixels is more than the limit of {max_pixels}",
                    413,
                    "too_large",
                )
            img.load()
    except QueryError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise QueryError("image: not a PNG or JPEG image (or too large to decode)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise QueryError(f"image: cannot be decoded ({type(exc).__name__})") from None
    if img.mode in ("L", "RGB"):
        return np.asarray(img, dtype=np.uint8)
    color = "A" in img.mode or img.mode in ("P", "CMYK", "YCbCr")
    try:
        converted = img.convert("RGB" if color else "L")
    except (OSError, ValueError) as exc:
        raise QueryError(f"image: mode {img.mode} cannot be converted ({exc})") from None
    return np.asarray(converted, dtype=np.uint8)
