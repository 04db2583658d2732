"""Sector (fan) geometry of a B-mode image: beam space and scan conversion.

A phased or curvilinear probe fires ``beams`` scan lines from an apex at the top centre of the
image, evenly spread over the opening angle, and samples each line at ``samples`` depths
between ``r_min`` and ``r_max``. Echoes are formed in this *beam space* (depth x beam), as a
scanner does, and scan-converted to the Cartesian image by bilinear interpolation. A pixel at
``(x, y)`` lies at radius ``r = hypot(x - x_a, y - y_a)`` and angle ``theta = atan2(x - x_a,
y - y_a)`` from the apex ``(x_a, y_a)``; it is inside the fan when ``r_min <= r <= r_max`` and
``|theta| <= half_angle``. Everything outside the fan is black.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fan:
    """Where the beams are: apex at ``(apex_x, 0)``, depths in pixels, angles in radians."""

    height: int
    width: int
    half_angle: float
    r_min: float
    r_max: float
    beams: int
    samples: int

    @property
    def apex_x(self) -> float:
        """Column of the apex (the top centre of the image)."""
        return (self.width - 1) / 2

    @property
    def sample_spacing(self) -> float:
        """Pixels between consecutive depth samples along a beam."""
        return (self.r_max - self.r_min) / (self.samples - 1)

    def radii(self) -> np.ndarray:
        """(R,) depth of every sample along a beam, pixels."""
        return np.linspace(self.r_min, self.r_max, self.samples)

    def angles(self) -> np.ndarray:
        """(B,) steering angle of every beam from the vertical, radians (positive = right)."""
        return np.linspace(-self.half_angle, self.half_angle, self.beams)

    def beam_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates ``(x, y)``, each (R, B), of every beam-space sample."""
        r = self.radii()[:, None]
        theta = self.angles()[None, :]
        return self.apex_x + r * np.sin(theta), r * np.cos(theta)


def make_fan(height: int, width: int, angle_deg: float, axial_oversampling: int = 2) -> Fan:
    """The largest fan of opening ``angle_deg`` whose whole sector fits in the image.

    ``r_max = min(H - 1, (W - 1) / 2 / sin(angle / 2))``; the near field above ``0.04 r_max``
    (the probe's footprint) is cut off. Beams are as many as image columns and depth is sampled
    ``axial_oversampling`` times per pixel, like RF data sampled finer than the display.
    """
    half = math.radians(angle_deg) / 2
    r_max = min(height - 1.0, (width - 1) / 2 / math.sin(half))
    r_min = 0.04 * r_max
    samples = axial_oversampling * math.ceil(r_max - r_min) + 1
    return Fan(height, width, half, r_min, r_max, beams=width, samples=samples)


@dataclass(frozen=True)
class ScanConversion:
    """Precomputed bilinear lookup from beam space to the pixels inside the fan."""

    mask: np.ndarray  # HxW bool, True inside the fan
    row: np.ndarray  # (M,) lower depth-sample index of each fan pixel
    col: np.ndarray  # (M,) left beam index
    w_row: np.ndarray  # (M,) fractional depth position in [0, 1]
    w_col: np.ndarray  # (M,) fractional beam position in [0, 1]


def scan_conversion(fan: Fan) -> ScanConversion:
    """Map every pixel centre to (depth sample, beam) coordinates; keep those inside the fan."""
    y, x = np.mgrid[0 : fan.height, 0 : fan.width].astype(np.float64)
    dx = x - fan.apex_x
    r = np.hypot(dx, y)
    theta = np.arctan2(dx, y)
    mask = (r >= fan.r_min) & (r <= fan.r_max) & (np.abs(theta) <= fan.half_angle)
    ri = (r[mask] - fan.r_min) / fan.sample_spacing
    bi = (theta[mask] + fan.half_angle) / (2 * fan.half_angle) * (fan.beams - 1)
    row = np.clip(np.floor(ri).astype(np.intp), 0, fan.samples - 2)
    col = np.clip(np.floor(bi).astype(np.intp), 0, fan.beams - 2)
    return ScanConversion(mask, row, col, ri - row, bi - col)


def scan_convert(beam_image: np.ndarray, sc: ScanConversion) -> np.ndarray:
    """Bilinear scan conversion of an (R, B) beam image to an (H, W) image, 0 outside the fan."""
    top = beam_image[sc.row, sc.col] * (1 - sc.w_col) + beam_image[sc.row, sc.col + 1] * sc.w_col
    bottom = (
        beam_image[sc.row + 1, sc.col] * (1 - sc.w_col)
        + beam_image[sc.row + 1, sc.col + 1] * sc.w_col
    )
    out = np.zeros(sc.mask.shape, dtype=beam_image.dtype)
    out[sc.mask] = top * (1 - sc.w_row) + bottom * sc.w_row
    return out
