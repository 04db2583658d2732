"""Stored PNG bytes -> uint8 frames, the only image work done on the CPU before a model.

Training and evaluation read frames here and hand them to the worker as uint8 NxCxHxW batches;
every transform after this (augmentation, the evaluation resize, normalisation) runs batched on
the worker's device (:mod:`echoseek.data.augment`). A batch needs one frame shape: a dataset
whose frames share a size (``dataset.json``'s ``image``: every .mat stack, a cine, most
inspection sets) passes through at that size; a dataset of mixed sizes is resized on decode to a
square of :data:`MIXED_SIDE_FACTOR` x the model's input side, enough for a crop of a fifth of
the frame's area to keep full resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from echoseek.data.dataset import decode_png

MIXED_SIDE_FACTOR = 2  # frame side of a mixed-size dataset, in model input sides
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL's convert("L")


def to_chw(image: np.ndarray, channels: int) -> torch.Tensor:
    """A (C, H, W) uint8 tensor with ``channels`` channels from (H, W) or (H, W, 3) uint8."""
    t = torch.from_numpy(np.require(image, requirements=["C", "W"]))
    t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)  # CxHxW
    if t.shape[0] == channels:
        return t
    if channels == 1:
        weights = torch.tensor(LUMA).view(3, 1, 1)
        return (t.float() * weights).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return t.expand(channels, -1, -1).contiguous()


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
        if tuple(frame.shape[-2:]) != shape:
            frame = resize_uint8(frame, shape)
        out[i] = frame.numpy()
    return out


def resize_uint8(frame: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A CxHxW uint8 frame resized to ``shape`` (bilinear, antialiased, rounded)."""
    x = F.interpolate(frame.unsqueeze(0).float(), size=shape, mode="bilinear", antialias=True)
    return x[0].round().clamp(0, 255).to(torch.uint8)
