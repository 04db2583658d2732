"""Respiratory motion with breath holds: the displacement trace of the diaphragm.

Free breathing follows Lujan et al. ("A method for incorporating organ motion due to breathing
into 3D dose calculations", Med. Phys. 26(5), 1999):

    z(t) = z0 - b cos^{2n}(pi t / tau - phi),

end-expiration ``z0`` reached once per period ``tau``, excursion ``b``, and a larger ``n``
lengthens the dwell at end-expiration. We write it as a displacement ``d = b cos^{2n}(theta /
2)`` from end-expiration (``d = 0``; inspiration moves the diaphragm deeper, ``d > 0``) with a
phase ``theta(t)`` that advances ``2 pi`` per cycle. Breathing is quasi-periodic: every cycle
draws its own period and excursion (relative spread ``variability``), the excursion is
interpolated between inspiration peaks and the end-expiration baseline drifts slowly.

A breath hold blends the trace into a plateau at the reference depth ``d_ref`` with raised-
cosine ramps, ``d = (1 - w) d_free + w (d_ref + drift)``, the plateau drifting by a few
hundredths of the excursion as real holds do. The liver does not retrace its path: its lateral
position lags the axial one, so inspiration and expiration pass the same depth at different
lateral offsets (hysteresis, Seppenwoolde et al., "Precise and real-time measurement of 3D tumor
motion in lung due to breathing and heartbeat", Int. J. Radiat. Oncol. Biol. Phys. 53(4),
2002); we add ``h b(t) sin(theta)``, zero at end-inspiration and end-expiration and of opposite
sign on the way in and out, faded out during holds, on top of a lateral component of
``LATERAL_SHARE d``. A small cardiac pulsation moves the anatomy axially. Neither is part of
the respiratory phase that defines the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LUJAN_N = 2  # shape exponent n of cos^{2n}
HEART_RATE_HZ = 1.2  # 72 beats per minute
BASELINE_DRIFT = 0.04  # slow end-expiration drift, fraction of the excursion
HOLD_DRIFT = 0.02  # drift across one breath-hold plateau, fraction of the excursion
LATERAL_SHARE = 0.1  # lateral component of the liver's motion, fraction of the axial one


@dataclass(frozen=True)
class BreathingTrace:
    """Per-frame respiratory state of a cine."""

    phase: np.ndarray  # (N,) respiratory displacement of the diaphragm, px (0 = end-expiration)
    reference: float  # the breath-hold reference depth, px
    hold: np.ndarray  # (N,) bool, frames on a breath-hold plateau
    hold_weight: np.ndarray  # (N,) in [0, 1]: 1 on a plateau, 0 in free breathing
    lateral: np.ndarray  # (N,) lateral displacement of the liver (share + hysteresis), px
    cardiac: np.ndarray  # (N,) axial cardiac displacement of the anatomy, px


def free_breathing(
    times: np.ndarray,
    period_s: float,
    amplitude: float,
    variability: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lujan displacement ``b(t) cos^{2n}(theta / 2)`` plus a slow baseline drift, px.

    Returns ``(d, theta, b)``, each (N,): displacement, breathing phase angle, excursion.
    """
    cycles = math.ceil(times[-1] / (period_s * 0.5)) + 3
    periods = period_s * np.clip(1 + variability * rng.standard_normal(cycles), 0.6, 1.4)
    peaks = np.cumsum(periods) - periods[0] * (1 + rng.uniform())  # inspiration peaks
    theta = np.interp(times, peaks, 2 * math.pi * np.arange(cycles))
    excursion = amplitude * np.clip(1 + variability * rng.standard_normal(cycles), 0.5, 1.5)
    b = np.interp(times, peaks, excursion)
    drift_phase = rng.uniform(0, 2 * math.pi)
    drift = BASELINE_DRIFT * amplitude * np.sin(2 * math.pi * times / (5 * period_s) + drift_phase)
    return b * np.cos(theta / 2) ** (2 * LUJAN_N) + drift, theta, b


def hold_starts(
    duration_s: float, holds: int, hold_s: float, ramp_s: float, rng: np.random.Generator
) -> np.ndarray:
    """(holds,) plateau start times: one hold at a random place in each equal slice of time."""
    slot = duration_s / holds
    room = max(slot - hold_s - 2 * ramp_s, 0.0)
    offsets = ramp_s + room * rng.uniform(0.2, 0.8, size=holds)
    return np.arange(holds) * slot + offsets


def hold_weight(times: np.ndarray, starts: np.ndarray, hold_s: float, ramp_s: float) -> np.ndarray:
    """(N,) blend weight: 1 on ``[start, start + hold_s]``, raised-cosine ramps of ``ramp_s``."""
    weight = np.zeros_like(times)
    for start in starts:
        before = np.clip((times - (start - ramp_s)) / ramp_s, 0, 1)
        after = np.clip(((start + hold_s + ramp_s) - times) / ramp_s, 0, 1)
        ramp = np.minimum(before, after)
        weight = np.maximum(weight, 0.5 - 0.5 * np.cos(math.pi * ramp))
    return weight


def breathing_trace(
    times: np.ndarray,
    *,
    period_s: float,
    amplitude: float,
    variability: float,
    holds: int,
    hold_s: float,
    ramp_s: float,
    hold_level: float,
    hysteresis: float,
    cardiac_amplitude: float,
    rng: np.random.Generator,
) -> BreathingTrace:
    """Free breathing with ``holds`` breath holds at ``d_ref = hold_level * amplitude``."""
    free, theta, excursion = free_breathing(times, period_s, amplitude, variability, rng)
    starts = hold_starts(float(times[-1]), holds, hold_s, ramp_s, rng)
    weight = hold_weight(times, starts, hold_s, ramp_s)
    reference = hold_level * amplitude
    signs = rng.choice([-1.0, 1.0], size=holds)
    drift = np.zeros_like(times)
    for start, sign in zip(starts, signs, strict=True):
        inside = (times >= start - ramp_s) & (times <= start + hold_s + ramp_s)
        along = (times[inside] - start) / hold_s - 0.5
        drift[inside] = sign * HOLD_DRIFT * amplitude * along
    phase = (1 - weight) * free + weight * (reference + drift)
    heart = rng.uniform(0, 2 * math.pi)
    cardiac = cardiac_amplitude * np.sin(2 * math.pi * HEART_RATE_HZ * times + heart)
    loop = (1 - weight) * hysteresis * excursion * np.sin(theta)
    lateral = LATERAL_SHARE * phase + loop
    return BreathingTrace(phase, reference, weight >= 1.0, weight, lateral, cardiac)
