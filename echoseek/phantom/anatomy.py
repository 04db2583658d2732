"""Echogenicity of a liver/diaphragm scene, in tissue coordinates, and rib acoustic shadows.

Everything is in image pixels at end-expiration (tissue coordinates); ``scale`` is the fan depth
over 100, so a scene keeps its look at any image size. From the probe down: skin (bright),
subcutaneous fat (dark), muscle (striated), the liver capsule (bright line), liver parenchyma
(unit echogenicity with a slow +-12 % texture) holding a few anechoic vessels with bright walls,
then the diaphragm, a bright arc concave to the probe, with darker tissue below it.

Ribs lie in the abdominal wall and do not move with breathing. Bone reflects and absorbs nearly
all the sound: along each beam the transmission is ``T(r) = exp(-k int_0^r occ(s) ds)`` with
``occ`` the rib's occupancy, so the rib's near surface is bright and everything behind it is an
acoustic shadow, a wedge along the beams.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from echoseek.phantom.fan import Fan

# Echogenicity (linear amplitude, liver = 1) of each structure.
SKIN, FAT, MUSCLE, CAPSULE = 2.0, 0.4, 0.8, 2.5
BELOW_DIAPHRAGM, DIAPHRAGM, ANECHOIC, VESSEL_WALL = 0.25, 7.0, 0.02, 2.5
RIB_SURFACE, RIB_ATTENUATION = 8.0, 1.5  # surface brightness; attenuation k per pixel of bone
TEXTURE_DEPTH, TEXTURE_SIGMA = 0.12, 6.0  # liver texture: relative spread, correlation (px)
TEXTURE_STEP = 2.0  # grid step of the stored texture, px
RASTER_STEP = 0.5  # grid step of the rasterised echo map, px
EDGE = 0.6  # soft edge width of every boundary, px


@dataclass(frozen=True)
class Ellipse:
    """An ellipse centred at ``(x, y)`` with semi-axes ``a`` (along ``angle``) and ``b``, px."""

    x: float
    y: float
    a: float
    b: float
    angle: float  # radians, counter-clockwise from the image x axis

    def radius(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised radius ``sqrt((u / a)^2 + (v / b)^2)`` in the ellipse frame: 1 on the edge."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (x - self.x) * c + (y - self.y) * s
        v = -(x - self.x) * s + (y - self.y) * c
        return np.sqrt((u / self.a) ** 2 + (v / self.b) ** 2)


@dataclass(frozen=True, eq=False)
class Anatomy:
    """One random scene: layer depths, diaphragm arc, vessels, ribs and liver texture."""

    scale: float
    wall: float  # depth of the liver capsule (bottom of the abdominal wall)
    diaphragm_y: float  # deepest point of the diaphragm arc
    diaphragm_x: float
    diaphragm_curvature: float  # 1/px: the arc rises by curvature * dx^2 at lateral offset dx
    diaphragm_tilt: float
    vessels: tuple[Ellipse, ...]
    ribs: tuple[Ellipse, ...]
    texture: np.ndarray  # slow echogenicity modulation on a grid of step TEXTURE_STEP px
    texture_origin: tuple[float, float]  # (x, y) of texture[0, 0]

    def diaphragm_depth(self, x: np.ndarray) -> np.ndarray:
        """Depth of the diaphragm's centre line at column ``x``."""
        dx = x - self.diaphragm_x
        return self.diaphragm_y - self.diaphragm_curvature * dx**2 + self.diaphragm_tilt * dx

    def motion_weight(self, y: np.ndarray) -> np.ndarray:
        """Fraction of the diaphragm's displacement at depth ``y``: 0 in the wall, 1 deep.

        The abdominal wall stays put while the liver slides under it; the weight rises
        smoothly (smoothstep) over a quarter of the fan depth below the capsule.
        """
        t = np.clip((y - self.wall) / (25.0 * self.scale), 0.0, 1.0)
        return t * t * (3 - 2 * t)


def rib_ellipse(fan: Fan, angle: float, scale: float) -> Ellipse:
    """A rib cross-section at ``angle`` from the apex, long axis across the beam."""
    r = 20.0 * scale
    return Ellipse(
        fan.apex_x + r * math.sin(angle), r * math.cos(angle), 3.0 * scale, 1.7 * scale, -angle
    )


def random_anatomy(fan: Fan, vessels: int, rib_side: float, rng: np.random.Generator) -> Anatomy:
    """Draw a scene that fits ``fan``; one rib sits on the ``rib_side`` (+1 right, -1 left)."""
    scale = fan.r_max / 100.0
    wall = 13.0 * scale * rng.uniform(0.9, 1.1)
    diaphragm_y = 72.0 * scale * rng.uniform(0.95, 1.05)
    half_width = fan.r_max * math.sin(fan.half_angle)
    rib = rib_ellipse(fan, rib_side * fan.half_angle * rng.uniform(0.55, 0.75), scale)
    texture, origin = _texture(fan, rng)
    scene = Anatomy(
        scale=scale,
        wall=wall,
        diaphragm_y=diaphragm_y,
        diaphragm_x=fan.apex_x + rng.uniform(-0.15, 0.15) * half_width,
        diaphragm_curvature=0.2 * fan.r_max / half_width**2 * rng.uniform(0.8, 1.2),
        diaphragm_tilt=rng.uniform(-0.12, 0.12),
        vessels=(),
        ribs=(rib,),
        texture=texture,
        texture_origin=origin,
    )
    return dataclasses.replace(scene, vessels=_vessels(scene, fan, vessels, rng))


def _texture(fan: Fan, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """Smoothed Gaussian noise covering the fan with a margin for motion and probe shifts."""
    x0, y0 = -0.5 * fan.width, -0.5 * fan.height
    rows = int(2 * fan.height / TEXTURE_STEP) + 2
    cols = int(2 * fan.width / TEXTURE_STEP) + 2
    noise = ndimage.gaussian_filter(rng.standard_normal((rows, cols)), TEXTURE_SIGMA / TEXTURE_STEP)
    noise /= noise.std() + 1e-12
    return 1.0 + TEXTURE_DEPTH * noise, (x0, y0)


def _vessels(anat: Anatomy, fan: Fan, count: int, rng: np.random.Generator) -> tuple[Ellipse, ...]:
    """Up to ``count`` non-overlapping vessels inside the liver, clear of the capsule and arc."""
    s = anat.scale
    found: list[Ellipse] = []
    for _ in range(200 * max(count, 1)):
        if len(found) >= count:
            break
        a = rng.uniform(2.5, 6.5) * s
        b = a * rng.uniform(0.45, 1.0)
        y = rng.uniform(anat.wall + 10 * s, anat.diaphragm_y - 8 * s)
        x = fan.apex_x + rng.uniform(-0.7, 0.7) * y * math.tan(fan.half_angle)
        clear = anat.diaphragm_depth(np.array(x)) - y > a + 6 * s
        apart = all(math.hypot(x - v.x, y - v.y) > a + v.a + 3 * s for v in found)
        if clear and apart:
            found.append(Ellipse(x, y, a, b, rng.uniform(0, math.pi)))
    return tuple(found)


def _step(signed_distance: np.ndarray) -> np.ndarray:
    """Soft indicator of ``signed_distance > 0`` with an edge of width ``EDGE`` px."""
    return 0.5 * (1.0 + np.tanh(signed_distance / EDGE))


def _layers(anat: Anatomy, y: np.ndarray) -> np.ndarray:
    """Abdominal wall: skin, fat, striated muscle, then the liver from the capsule down."""
    s = anat.scale
    muscle = MUSCLE * (1.0 + 0.3 * np.sin(2 * math.pi * y / (2.5 * s)))
    echo = SKIN + (FAT - SKIN) * _step(y - 2.5 * s)
    echo = echo + (muscle - echo) * _step(y - 6.0 * s)
    return echo + CAPSULE * np.exp(-(((y - anat.wall) / (0.8 * s)) ** 2))


def sample_texture(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of the slow liver texture at tissue coordinates ``(x, y)``."""
    x0, y0 = anat.texture_origin
    coords = np.stack([(y - y0) / TEXTURE_STEP, (x - x0) / TEXTURE_STEP])
    return ndimage.map_coordinates(anat.texture, coords, order=1, mode="nearest")


def echogenicity(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear echo amplitude at tissue coordinates ``(x, y)`` (liver = 1), without ribs."""
    echo = _layers(anat, y)
    liver = sample_texture(anat, x, y)
    echo = echo + (liver - echo) * _step(y - anat.wall - 1.5 * anat.scale)
    below = y - anat.diaphragm_depth(x)
    echo = echo + (BELOW_DIAPHRAGM - echo) * _step(below)
    echo = echo + DIAPHRAGM * np.exp(-((below / (1.2 * anat.scale)) ** 2))
    for v in anat.vessels:
        # distance from the wall in px, approximately, along the short axis
        out = (v.radius(x, y) - 1.0) * v.b
        inside = _step(-out)
        echo = echo * (1 - inside) + ANECHOIC * inside
        echo = echo + VESSEL_WALL * np.exp(-((out / (0.7 * anat.scale)) ** 2))
    return echo


@dataclass(frozen=True, eq=False)
class EchoMap:
    """Echogenicity rasterised once on a fine grid of tissue coordinates; frames sample it."""

    values: np.ndarray  # echogenicity at (y0 + i step, x0 + j step)
    x0: float
    y0: float
    step: float

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear lookup at tissue coordinates ``(x, y)`` (edge values beyond the grid)."""
        coords = np.stack([(y - self.y0) / self.step, (x - self.x0) / self.step])
        return ndimage.map_coordinates(self.values, coords, order=1, mode="nearest")


def rasterize(anat: Anatomy, height: int, width: int, step: float = RASTER_STEP) -> EchoMap:
    """:func:`echogenicity` on a grid covering the image plus a quarter on every side."""
    x0, y0 = -0.25 * width, -0.25 * height
    y, x = np.mgrid[0 : int(1.5 * height / step) + 1, 0 : int(1.5 * width / step) + 1]
    values = echogenicity(anat, x0 + step * x, y0 + step * y)
    return EchoMap(values.astype(np.float32), x0, y0, step)


def rib_occupancy(ribs: tuple[Ellipse, ...], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Soft indicator (0..1) of bone at body coordinates ``(x, y)``."""
    occ = np.zeros(np.broadcast(x, y).shape)
    for rib in ribs:
        occ = np.maximum(occ, _step((1.0 - rib.radius(x, y)) * rib.b))
    return occ


def bone_effects(occupancy: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Rib surface echo and transmission of a (R, B) beam-space bone occupancy.

    ``T(r) = exp(-k sum_{r' < r} occ(r') dr)``, exclusive along the beam so the first bone
    sample still echoes; the echo of tissue ``E`` becomes ``(E + surface) T`` with
    ``surface = RIB_SURFACE occ``.
    """
    depth_in_bone = (np.cumsum(occupancy, axis=0) - occupancy) * spacing
    return RIB_SURFACE * occupancy, np.exp(-RIB_ATTENUATION * depth_in_bone)
