"""Label-preserving nuisances of a hand-held breath-hold scan: gain, hand jitter, artefacts.

A real cine varies frame to frame for reasons that have nothing to do with the respiratory
state, and a retrieval embedding must look through them. Every nuisance here leaves the label
(respiratory phase + deliberate view) untouched; each is set by a
:class:`~echoseek.phantom.generate.PhantomParams` field and disabled by 0:

* **receive gain** (``gain_db``): the sonographer re-adjusts the overall gain now and then
  (a Poisson process, mean ``ADJUST_INTERVAL_S`` apart; each new setting ``N(0, gain_db)`` dB
  about the nominal, reached over a ``ADJUST_RAMP_S`` knob turn), and the scanner's auto-gain
  adds a slow flicker (AR(1), ``N(0, gain_flicker_db)`` dB, correlation time
  ``FLICKER_TIME_S``);
* **time-gain compensation** (``tgc_db``): ``TGC_SLIDERS`` depth sliders, each
  ``N(0, tgc_db)`` dB, re-set at every adjustment and interpolated linearly over depth, so the
  brightness ramps differently with depth from one stretch of the cine to the next;
* **contrast** (``contrast``): the display dynamic range ``DR exp(N(0, contrast))`` (clipped to
  0.6-1.6 x), re-set at every adjustment; the liver keeps its mid-grey and contrast stretches
  about it;
* **hand jitter** (``jitter_shift``, ``jitter_rotation_deg``): the probe held by hand slides
  sideways and rocks a little on every frame (AR(1), correlation time ``JITTER_TIME_S``, each
  component clipped at ``JITTER_CLIP`` standard deviations). Much smaller than the deliberate
  probe shifts of the hard-negative episodes (:mod:`.episodes`), which add to it in the
  jitter's direction so an episode always moves the view further than jitter alone does;
* **transient artefacts** (``artifact_rate``): short runs of frames with lost contact at one
  edge of the footprint (a dark wedge of beams from the skin down, no bright rib surface, unlike
  a rib shadow) or near-field reverberation (bright arcs at multiples of a shallow reflector's
  depth).

Speckle decorrelation (out-of-plane motion) is the ``speckle_corr`` of :mod:`.speckle`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ADJUST_INTERVAL_S = 10.0  # mean time between the sonographer's gain/TGC/contrast adjustments
ADJUST_RAMP_S = 0.4  # a knob turn: settings blend linearly over this long
FLICKER_TIME_S = 0.3  # correlation time of the auto-gain flicker
TGC_SLIDERS = 4  # depth sliders of the TGC panel, evenly spaced from skin to the deepest sample
CONTRAST_RANGE = (0.6, 1.6)  # clip of the dynamic-range factor
JITTER_TIME_S = 0.5  # correlation time of the hand's motion
JITTER_CLIP = 2.0  # jitter is clipped at this many standard deviations
ARTIFACT_RUN_S = (0.2, 0.6)  # length of one artefact run
ARTIFACT_KINDS = ("dropout", "reverb")


@dataclass(frozen=True)
class Artifact:
    """A transient artefact on one frame: lost contact or reverberation."""

    kind: str  # "dropout" or "reverb"
    side: float = 1.0  # dropout: footprint edge that lost contact (+1 right, -1 left)
    extent: float = 0.2  # dropout: share of the beams; reverb: reflector depth / fan depth
    strength: float = 0.9  # dropout: echo lost (0..1); reverb: first band's echogenicity


@dataclass(frozen=True)
class Settings:
    """Scanner settings and transient artefact of one frame (the default is nominal)."""

    gain_db: float = 0.0  # overall receive gain about the nominal
    tgc_db: tuple[float, ...] = ()  # TGC slider offsets, skin to deepest ((): all zero)
    dynamic_range_scale: float = 1.0  # display dynamic range, relative to the nominal
    artifact: Artifact | None = None


@dataclass(frozen=True)
class Nuisance:
    """Per-frame nuisance state of a cine."""

    settings: list[Settings]
    jitter_x: np.ndarray  # (N,) lateral hand jitter, px
    jitter_rotation: np.ndarray  # (N,) rotation jitter, radians
    adjustments: np.ndarray  # (A,) frames where the sonographer starts an adjustment

    @property
    def gain_db(self) -> np.ndarray:
        """(N,) overall gain of every frame, dB about the nominal."""
        return np.array([s.gain_db for s in self.settings])

    @property
    def artifact(self) -> np.ndarray:
        """(N,) bool, frames with a transient artefact."""
        return np.array([s.artifact is not None for s in self.settings])


def ar1(n: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) stationary unit-variance AR(1) ``x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t``."""
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0]
    innovation = math.sqrt(1.0 - rho * rho)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + innovation * e[t]
    return x


def frame_rho(frame_rate: float, time_s: float) -> float:
    """Per-frame correlation of a process with correlation time ``time_s``."""
    return math.exp(-1.0 / (frame_rate * time_s))


def hand_jitter(
    frames: int,
    frame_rate: float,
    shift_px: float,
    rotation_rad: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) lateral shift (px) and rotation (rad) of the hand-held probe, AR(1), clipped."""
    rho = frame_rho(frame_rate, JITTER_TIME_S)
    x = shift_px * np.clip(ar1(frames, rho, rng), -JITTER_CLIP, JITTER_CLIP)
    r = rotation_rad * np.clip(ar1(frames, rho, rng), -JITTER_CLIP, JITTER_CLIP)
    return x, r


def adjustment_frames(
    frames: int, frame_rate: float, hold: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Frames where the sonographer starts re-setting gain/TGC/contrast, sorted, all > 0.

    A Poisson process (mean ``ADJUST_INTERVAL_S`` apart) plus, if ``hold`` (N,) bool is given,
    one adjustment at a random frame of every gap between two consecutive breath holds.
    """
    duration = frames / frame_rate
    gaps = rng.exponential(ADJUST_INTERVAL_S, size=int(3 * duration / ADJUST_INTERVAL_S) + 4)
    times = np.cumsum(gaps)
    starts = np.rint(times[times < duration] * frame_rate).astype(np.int64)
    if hold is not None:
        extra = [int(rng.integers(a, b)) for a, b in gaps_between_runs(hold)]
        starts = np.concatenate([starts, np.asarray(extra, dtype=np.int64)])
    return np.unique(starts[starts > 0])


def gaps_between_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[stop, start)`` frames between consecutive runs of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    run_starts, run_stops = edges[::2], edges[1::2]
    return [(int(a), int(b)) for a, b in zip(run_stops[:-1], run_starts[1:], strict=True)]


def _piecewise(values: np.ndarray, starts: np.ndarray, frames: int, ramp: int) -> np.ndarray:
    """(N, ...) ``values[0]`` then ``values[k]`` from ``starts[k-1]``, linear ramps of ``ramp``."""
    out = np.repeat(values[:1], frames, axis=0).astype(np.float64)
    for value, start in zip(values[1:], starts, strict=True):
        w = np.clip((np.arange(frames) - start + 1) / max(ramp, 1), 0.0, 1.0)
        w = w.reshape((-1,) + (1,) * (values.ndim - 1))
        out = out * (1 - w) + value * w
    return out


def artifact_runs(
    frames: int, frame_rate: float, rate: float, rng: np.random.Generator
) -> list[Artifact | None]:
    """Per frame ``None`` or the :class:`Artifact` of a run; about ``rate * frames`` frames."""
    out: list[Artifact | None] = [None] * frames
    if rate <= 0:
        return out
    lo, hi = (max(1, round(s * frame_rate)) for s in ARTIFACT_RUN_S)
    budget = round(rate * frames)
    covered = 0
    for _ in range(10 * frames):
        if covered >= budget:
            break
        length = min(int(rng.integers(lo, hi + 1)), budget - covered, frames)
        start = int(rng.integers(0, frames - length + 1))
        if any(a is not None for a in out[max(start - 1, 0) : start + length + 1]):
            continue
        kind = ARTIFACT_KINDS[int(rng.integers(len(ARTIFACT_KINDS)))]
        if kind == "dropout":
            art = Artifact(
                kind,
                side=float(rng.choice([-1.0, 1.0])),
                extent=float(rng.uniform(0.12, 0.3)),
                strength=float(rng.uniform(0.85, 0.98)),
            )
        else:
            art = Artifact(
                kind, extent=float(rng.uniform(0.07, 0.12)), strength=float(rng.uniform(1.5, 3.0))
            )
        out[start : start + length] = [art] * length
        covered += length
    return out


def make_nuisance(
    frames: int,
    frame_rate: float,
    *,
    gain_db: float,
    gain_flicker_db: float,
    tgc_db: float,
    contrast: float,
    jitter_px: float,
    jitter_rotation_rad: float,
    artifact_rate: float,
    rng: np.random.Generator,
    hold: np.ndarray | None = None,
) -> Nuisance:
    """Draw the per-frame scanner settings, hand jitter and artefacts of a cine.

    Settings change at :func:`adjustment_frames` (with ``hold``, also between breath holds).
    Every draw is made whatever the amplitudes, so setting one nuisance to 0 leaves the others
    unchanged.
    """
    starts = adjustment_frames(frames, frame_rate, hold, rng)
    segments = len(starts) + 1
    ramp = max(1, round(ADJUST_RAMP_S * frame_rate))
    gain = _piecewise(gain_db * rng.standard_normal(segments), starts, frames, ramp)
    flicker = gain_flicker_db * ar1(frames, frame_rho(frame_rate, FLICKER_TIME_S), rng)
    tgc = _piecewise(tgc_db * rng.standard_normal((segments, TGC_SLIDERS)), starts, frames, ramp)
    factor = np.clip(np.exp(contrast * rng.standard_normal(segments)), *CONTRAST_RANGE)
    dr = _piecewise(factor, starts, frames, ramp)
    jitter_x, jitter_r = hand_jitter(frames, frame_rate, jitter_px, jitter_rotation_rad, rng)
    artifacts = artifact_runs(frames, frame_rate, artifact_rate, rng)
    total = gain + flicker
    settings = [
        Settings(
            gain_db=float(total[i]),
            tgc_db=tuple(float(v) for v in tgc[i]) if tgc_db > 0 else (),
            dynamic_range_scale=float(dr[i]),
            artifact=artifacts[i],
        )
        for i in range(frames)
    ]
    return Nuisance(settings, jitter_x, jitter_r, starts)
