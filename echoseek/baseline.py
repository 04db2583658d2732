"""The raw-pixel baseline embedding every trained model must beat.

An image becomes a vector by: grayscale (ITU-R 601-2 luma for RGB), area-downsampling to
``size x size`` (PIL box filter), scaling to [0, 1], flattening and L2-normalising, so the
inner product of two vectors is their cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def pixel_embed(images: Sequence[np.ndarray], size: int = 32) -> np.ndarray:
    """(N, size*size) float32 L2-normalised raw-pixel vectors of uint8 images."""
    out = np.empty((len(images), size * size), dtype=np.float32)
    for i, image in enumerate(images):
        img = Image.fromarray(image)
        if img.mode != "L":
            img = img.convert("L")
        small = img.resize((size, size), Image.Resampling.BOX)
        out[i] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)
