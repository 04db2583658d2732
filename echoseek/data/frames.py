"""Stored PNG bytes -> uint8 frames, the only image work done on the CPU before a model.

Training and evaluation read frames here and hand them to the worker as uint8 NxCxHxW batches;
every transform after this (augmentation, the evaluation resize, normalisation) runs batched on
the worker's device (:mod:`echoseek.data.augment`). A batch needs one frame shape: a dataset
whose frames share a size (``dataset.json``'s ``image``: every .mat stack, a cine, most
inspection sets) passes through at that size; a dataset of mixed sizes is resized on decode to a
square of :data:`MIXED_SIDE_FACTOR` x the model's input side, enough for a crop of a fifth of
the frame's area to keep full resolution. numpy and PIL only: the Ray Data tasks that decode
never import torch (1.5 s per process here, paid by every task on every node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from echoseek.data.dataset import decode_png

MIXED_SIDE_FACTOR = 2  # frame side of a mixed-size dataset, in model input sides
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, as PIL's convert("L")


def to_chw(image: np.ndarray, channels: int) -> np.ndarray:
    """A (C, H, W) uint8 array with ``channels`` channels from (H, W) or (H, W, 3) uint8:
    luma for RGB -> gray, repetition for gray -> RGB."""
    chw = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)  # CxHxW
    if chw.shape[0] == channels:
        return chw.copy()  # writable and contiguous (decoded PNG arrays are read-only views)
    if channels == 1:
        luma = (chw.astype(np.float32) * LUMA.reshape(3, 1, 1)).sum(0, keepdims=True)
        return np.clip(np.round(luma), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(chw, (channels, *chw.shape[1:])))


def frame_shape(descriptor: Mapping[str, Any], size: int) -> tuple[int, int]:
    """The (H, W) every frame of a dataset is decoded to: its own when all share one (the
    descriptor's ``image``), else a square of ``MIXED_SIDE_FACTOR x size``."""
    image = descriptor.get("image")
    if image:
        return int(image["height"]), int(image["width"])
    return MIXED_SIDE_FACTOR * size, MIXED_SIDE_FACTOR * size


def decode_frames(data: Sequence[bytes], channels: int, shape: tuple[int, int]) -> np.ndarray:
    """PNG bytes -> an NxCxHxW uint8 array of ``shape`` frames with ``channels`` channels
    (a frame of another size is resized to it, bilinear and antialiased)."""
    out = np.empty((len(data), channels, *shape), dtype=np.uint8)
    for i, item in enumerate(data):
        frame = to_chw(decode_png(item), channels)
        out[i] = frame if frame.shape[-2:] == shape else resize(frame, shape)
    return out


def resize(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A CxHxW uint8 frame resized to ``shape`` (PIL's bilinear filter, which widens its
    support when it shrinks: antialiased)."""
    size = (shape[1], shape[0])  # PIL: (width, height)
    planes = [np.asarray(Image.fromarray(c).resize(size, Image.Resampling.BILINEAR)) for c in frame]
    return np.stack(planes)
