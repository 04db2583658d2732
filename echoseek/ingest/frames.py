"""The one rule that turns stored frames of any numeric type into uint8 images.

* ``uint8`` frames are kept unchanged (bit-exact round trip).
* ``bool`` frames map False/True to 0/255.
* Every other real type (``uint16``, signed integers, ``float32``/``float64``) is mapped
  linearly from the global range ``[lo, hi]`` of the whole stack to ``[0, 255]``::

      out = rint(255 * (x - lo) / (hi - lo))

  where ``lo``/``hi`` are the minimum and maximum over all frames (a first streaming pass), so
  relative brightness between frames is preserved. A constant stack maps to 0. NaN or infinite
  values are an error.

Image files with 16-bit or float pixels use the same formula with their own range.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from echoseek.errors import InputError


@dataclass(frozen=True)
class Scaling:
    """The linear map of the conversion rule; ``identity`` for uint8 input."""

    lo: float = 0.0
    hi: float = 255.0
    identity: bool = True

    def describe(self) -> dict[str, object]:
        """JSON-able description recorded in ``dataset.json``."""
        rule = "uint8 kept" if self.identity else "linear [lo, hi] -> [0, 255], rint"
        return {"rule": rule, "lo": self.lo, "hi": self.hi}


def needs_range(dtype: np.dtype) -> bool:
    """True when frames of ``dtype`` need the global [lo, hi] pass."""
    return dtype != np.uint8 and dtype != np.bool_


def check_dtype(dtype: np.dtype, where: str) -> None:
    """Reject non-real pixel types (complex, object, strings) with a clear error."""
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(
        dtype, np.complexfloating
    ):
        raise InputError(f"{where}: unsupported pixel type {dtype} (need integer or real float)")


def scan_range(chunks: Iterable[np.ndarray], where: str) -> Scaling:
    """First pass: the global min/max over streamed chunks (NaN/inf rejected)."""
    lo, hi = np.inf, -np.inf
    for chunk in chunks:
        if chunk.size == 0:
            continue
        if np.issubdtype(chunk.dtype, np.floating) and not np.isfinite(chunk).all():
            raise InputError(f"{where}: frames contain NaN or infinite values")
        lo = min(lo, float(chunk.min()))
        hi = max(hi, float(chunk.max()))
    if lo > hi:
        raise InputError(f"{where}: holds 0 frames")
    return Scaling(lo=lo, hi=hi, identity=False)


def to_uint8(frames: np.ndarray, scaling: Scaling) -> np.ndarray:
    """Apply the conversion rule to a chunk of frames."""
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype == np.bool_:
        return frames.astype(np.uint8) * np.uint8(255)
    span = scaling.hi - scaling.lo
    if span <= 0:
        return np.zeros(frames.shape, dtype=np.uint8)
    scaled = (frames.astype(np.float64) - scaling.lo) * (255.0 / span)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
