"""Render one B-mode frame: anatomy under the probe, speckle, shadows, log compression.

For every beam-space sample at image position ``p`` (see :mod:`phantom_fan`):

1. probe pose: body position ``q = R(phi) (p - apex) + apex + (t_x, 0)``;
2. breathing: the tissue now at ``q`` sat at ``q - u`` at end-expiration, with
   ``u = w(q_y) (d_x, d_y)``: mostly axial, fading into the abdominal wall (``w``);
3. echo amplitude ``E`` from the anatomy at ``q - u``, rib surfaces and shadows at ``q``;
4. envelope ``e = E |C(r - u_r)| + n |w|``: speckle ``C`` carried along the beam with the
   tissue's radial displacement ``u_r = u_y cos(theta)``, plus Rayleigh electronic noise a few dB
   above black;
5. log compression in beam space, then bilinear scan conversion and rounding to uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from echoseek.data.phantom_anatomy import (
    Anatomy,
    EchoMap,
    bone_effects,
    rasterize,
    rib_ellipse,
    rib_occupancy,
)
from echoseek.data.phantom_fan import Fan, ScanConversion, scan_conversion, scan_convert
from echoseek.data.phantom_speckle import (
    complex_white,
    log_compress,
    reference_level,
    shift_rows,
)
from echoseek.data.phantom_views import View

NOISE_FLOOR_DB = 3.0  # mean electronic noise, dB above the black level


@dataclass(frozen=True, eq=False)
class Renderer:
    """Everything fixed across the frames of one cine."""

    fan: Fan
    conversion: ScanConversion
    anatomy: Anatomy
    tissue: EchoMap
    still_bone: tuple[np.ndarray, np.ndarray]  # rib surface and transmission, unchanged view
    dynamic_range_db: float
    margin: int  # extra speckle rows above and below the beam samples, for motion
    x: np.ndarray  # (R, B) image x of every beam sample
    y: np.ndarray  # (R, B) image y
    cos_theta: np.ndarray  # (1, B)

    @property
    def field_shape(self) -> tuple[int, int]:
        """Shape of the speckle field the frames read: beam space plus motion margins."""
        return self.fan.samples + 2 * self.margin, self.fan.beams

    def body_points(self, view: View) -> tuple[np.ndarray, np.ndarray]:
        """Body coordinates of every beam sample for a probe pose."""
        if view.shift_x == 0.0 and view.rotation == 0.0:
            return self.x, self.y
        c, s = math.cos(view.rotation), math.sin(view.rotation)
        dx = self.x - self.fan.apex_x
        return self.fan.apex_x + c * dx - s * self.y + view.shift_x, s * dx + c * self.y

    def bone(self, view: View, xb: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rib surface echo and shadow transmission for a view (cached for the unchanged one)."""
        if view == View():
            return self.still_bone
        ribs = self.anatomy.ribs
        if view.rib_angle is not None:
            ribs = (*ribs, rib_ellipse(self.fan, view.rib_angle, self.anatomy.scale))
        return bone_effects(rib_occupancy(ribs, xb, yb), self.fan.sample_spacing)

    def render(
        self,
        displacement: tuple[float, float],
        view: View,
        field: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """HxW uint8 frame: liver displacement ``(d_x, d_y)`` px, ``view``, speckle ``field``."""
        xb, yb = self.body_points(view)
        weight = self.anatomy.motion_weight(yb)  # RxB
        u = displacement[1] * weight  # RxB axial tissue displacement
        radial = u * self.cos_theta / self.fan.sample_spacing  # RxB, in depth samples
        rows = self.margin + np.arange(self.fan.samples)[:, None] - radial
        speckle = np.abs(shift_rows(field, rows))  # RxB Rayleigh
        noise = np.abs(complex_white(speckle.shape, rng)) / (math.sqrt(math.pi) / 2)
        reference = reference_level(self.dynamic_range_db)
        floor = reference * 10 ** ((NOISE_FLOOR_DB - self.dynamic_range_db) / 20)
        surface, transmission = self.bone(view, xb, yb)
        echo = (self.tissue.sample(xb - displacement[0] * weight, yb - u) + surface) * transmission
        envelope = echo * speckle + floor * noise  # RxB
        grey = log_compress(envelope, reference, self.dynamic_range_db)  # RxB in [0, 255]
        return np.rint(scan_convert(grey, self.conversion)).astype(np.uint8)  # HxW


def make_renderer(
    fan: Fan, anatomy: Anatomy, dynamic_range_db: float, max_displacement: float
) -> Renderer:
    """A renderer whose speckle margin covers displacements up to ``max_displacement`` px."""
    x, y = fan.beam_points()
    margin = math.ceil(max_displacement / fan.sample_spacing) + 2
    return Renderer(
        fan=fan,
        conversion=scan_conversion(fan),
        anatomy=anatomy,
        tissue=rasterize(anatomy, fan.height, fan.width),
        still_bone=bone_effects(rib_occupancy(anatomy.ribs, x, y), fan.sample_spacing),
        dynamic_range_db=dynamic_range_db,
        margin=margin,
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        cos_theta=np.cos(fan.angles()).astype(np.float32)[None, :],
    )
