"""Render one B-mode frame: anatomy under the probe, speckle, shadows, log compression.

For every beam-space sample at image position ``p`` (see :mod:`.fan`):

1. probe pose: body position ``q = R(phi) (p - apex) + apex + (t_x, 0)``;
2. breathing: the tissue now at ``q`` sat at ``q - u`` at end-expiration, with
   ``u = w(q_y) (d_x, d_y)``: mostly axial, fading into the abdominal wall (``w``);
3. echo amplitude ``E`` from the anatomy at ``q - u``, rib surfaces and shadows at ``q``;
4. transient artefact (:mod:`.nuisance`): lost contact scales ``E`` down on the beams at
   one edge of the footprint, reverberation adds bright arcs at multiples of a shallow depth;
5. envelope ``e = g(r) (E |C(r - u_r)| + n |w|)``: speckle ``C`` carried along the beam with
   the tissue's radial displacement ``u_r = u_y cos(theta)``, plus Rayleigh electronic noise a
   few dB above black (at the nominal gain), all amplified by the receive gain ``g(r)`` (overall
   gain plus the TGC curve over depth, dB);
6. log compression in beam space with the frame's dynamic range (the liver keeps its mid-grey),
   then bilinear scan conversion and rounding to uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from echoseek.phantom.anatomy import (
    Anatomy,
    EchoMap,
    bone_effects,
    rasterize,
    rib_ellipse,
    rib_occupancy,
)
from echoseek.phantom.episodes import View
from echoseek.phantom.fan import Fan, ScanConversion, scan_conversion, scan_convert
from echoseek.phantom.nuisance import Artifact, Settings
from echoseek.phantom.speckle import (
    complex_white,
    log_compress,
    reference_level,
    shift_rows,
)

NOISE_FLOOR_DB = 3.0  # mean electronic noise, dB above the black level
NOMINAL = Settings()
DROPOUT_EDGE = 0.03  # soft edge of a lost-contact wedge, share of the beams
REVERB_BANDS, REVERB_DECAY = 4, 0.55  # reverberation arcs and their amplitude ratio


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
        settings: Settings = NOMINAL,
    ) -> np.ndarray:
        """HxW uint8 frame: liver displacement ``(d_x, d_y)`` px, ``view``, speckle ``field``,
        scanner ``settings`` (gain, TGC, dynamic range) and transient artefact."""
        xb, yb = self.body_points(view)
        weight = self.anatomy.motion_weight(yb)  # RxB
        u = displacement[1] * weight  # RxB axial tissue displacement
        radial = u * self.cos_theta / self.fan.sample_spacing  # RxB, in depth samples
        rows = self.margin + np.arange(self.fan.samples)[:, None] - radial
        speckle = np.abs(shift_rows(field, rows))  # RxB Rayleigh
        noise = np.abs(complex_white(speckle.shape, rng)) / (math.sqrt(math.pi) / 2)
        floor = reference_level(self.dynamic_range_db) * 10 ** (
            (NOISE_FLOOR_DB - self.dynamic_range_db) / 20
        )
        surface, transmission = self.bone(view, xb, yb)
        echo = (self.tissue.sample(xb - displacement[0] * weight, yb - u) + surface) * transmission
        if settings.artifact is not None:
            echo = self.artifact(echo, settings.artifact)
        envelope = (echo * speckle + floor * noise) * self.gain(settings)  # RxB
        dynamic_range = self.dynamic_range_db * settings.dynamic_range_scale
        grey = log_compress(envelope, reference_level(dynamic_range), dynamic_range)  # [0, 255]
        return np.rint(scan_convert(grey, self.conversion)).astype(np.uint8)  # HxW

    def gain(self, settings: Settings) -> np.ndarray | float:
        """Linear receive gain: (R, 1) over depth with a TGC curve, else a scalar."""
        if not settings.tgc_db:
            return float(10 ** (settings.gain_db / 20))
        sliders = np.linspace(0.0, 1.0, len(settings.tgc_db))
        depth = np.linspace(0.0, 1.0, self.fan.samples)
        db = settings.gain_db + np.interp(depth, sliders, np.asarray(settings.tgc_db))
        return (10 ** (db / 20)).astype(np.float32)[:, None]

    def artifact(self, echo: np.ndarray, art: Artifact) -> np.ndarray:
        """``echo`` (R, B) with lost contact (a dark edge wedge) or reverberation arcs."""
        if art.kind == "dropout":
            position = np.linspace(0.0, 1.0, self.fan.beams)
            edge = 1.0 - position if art.side > 0 else position
            lost = 0.5 * (1.0 + np.tanh((art.extent - edge) / DROPOUT_EDGE))
            return echo * (1.0 - art.strength * lost)[None, :].astype(np.float32)
        radii = self.fan.radii()
        spacing = art.extent * self.fan.r_max
        width = 0.8 * self.anatomy.scale
        bands = sum(
            art.strength * REVERB_DECAY**k * np.exp(-(((radii - (k + 1) * spacing) / width) ** 2))
            for k in range(REVERB_BANDS)
        )
        return echo + np.asarray(bands, dtype=np.float32)[:, None]


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
