"""A phantom ultrasound breath-hold cine: the stand-in for clinical data that cannot ship.

:func:`generate_phantom` renders a seeded, deterministic B-mode cine (sector scan, fully
developed speckle, liver with vessels, diaphragm, rib shadows) of a subject breathing freely
with one or more breath holds, and labels every frame against the breath-hold reference:

* ``phase[i]`` is the respiratory displacement of the diaphragm in frame ``i`` (px, 0 at
  end-expiration, see :mod:`.motion`); the reference depth is the breath-hold level
  ``hold_level * breath_amplitude * height``;
* **label rule**: frame ``i`` is positive iff ``|phase[i] - reference| <= tolerance`` *and* its
  view is unchanged; frames with a probe shift or a rib shadow sweeping in (hard negatives, see
  :mod:`.episodes`) are negative even at the reference depth;
* **tolerance**: with ``tolerance=None`` (default) it is *calibrated*: the midpoint between the
  k-th and (k+1)-th smallest ``|phase - reference|`` over frames with an unchanged view, with
  ``k = round(positive_ratio * frames)``, so exactly ``k`` frames are positive. An explicit
  ``tolerance`` (px) is used as given and ``positive_ratio`` is then only informative;
* **nuisances** that change the image but not the label (:mod:`.nuisance`): the
  sonographer's gain, TGC and contrast re-adjustments (also once between breath holds, so
  every hold looks a little different), auto-gain flicker, hand jitter of the probe (much
  smaller than the probe shifts of the hard negatives), transient lost contact or
  reverberation, and speckle that decorrelates quickly (out-of-plane motion);
* the **query** is the reference frame (the breath-hold frame nearest the reference depth,
  without an artefact) rendered again with an independent scatterer field: same anatomy, view,
  hand jitter and scanner settings, fresh speckle, so it equals no frame of the cine;
* **phase classes** for training (``phase_labels``, :mod:`.phase`): respiratory
  displacement in bins of ``phase_bin`` tolerances, one class per hard-negative episode. The
  breath-hold labels are relative to this cine's reference and do not transfer to another
  subject; "same displacement, same view" does (see BENCHMARKS.md, training quality).

At the defaults the raw-pixel baseline (:mod:`echoseek.baseline`) reaches a leave-one-out mAP
of about 0.5-0.7 (random: 0.2), the phase oracle 1.0. Generation streams frame by frame
(memory is the uint8 stack plus a few beam-space arrays; 16 MiB peak for the default cine) and
costs well under a CPU second per 100 frames of 128 x 128 on one core
(``bench/bench_phantom.py``). :func:`echoseek.phantom.write.write_phantom` writes the
files the team's notebook used (``dataset.mat``, ``dataset_labels.csv``, ``invivo.png``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from echoseek.errors import ConfigError
from echoseek.phantom.anatomy import random_anatomy
from echoseek.phantom.cine import Phantom, PhantomParams
from echoseek.phantom.episodes import (
    KINDS,
    Episode,
    episode_count,
    episode_mask,
    frame_views,
    make_episodes,
    place_episodes,
)
from echoseek.phantom.fan import make_fan
from echoseek.phantom.motion import BreathingTrace, breathing_trace
from echoseek.phantom.nuisance import Nuisance, make_nuisance
from echoseek.phantom.phase import phase_classes
from echoseek.phantom.render import make_renderer
from echoseek.phantom.speckle import filtered_speckle, gaussian_transfer, speckle_fields

__all__ = ["Phantom", "PhantomParams", "calibrate_tolerance", "generate_phantom"]


def calibrate_tolerance(distance: np.ndarray, eligible: np.ndarray, ratio: float) -> float:
    """Tolerance giving ``k = round(ratio * N)`` positives among the ``eligible`` frames.

    The midpoint between the k-th and (k+1)-th smallest eligible ``distance`` (the largest one
    when every eligible frame is needed). Raises ConfigError when ``k`` is 0 or exceeds the
    eligible frames.
    """
    n = len(distance)
    k = round(ratio * n)
    ranked = np.sort(distance[eligible])
    if k < 1:
        raise ConfigError(f"positive_ratio: {ratio:g} of {n} frames leaves no positive frame")
    if k > len(ranked):
        raise ConfigError(
            f"positive_ratio: {ratio:g} needs {k} positive frames but only {len(ranked)} of "
            f"{n} have an unchanged view; lower positive_ratio or hard_negative_rate"
        )
    if k == len(ranked):
        return float(ranked[-1])
    return float((ranked[k - 1] + ranked[k]) / 2)


def generate_phantom(params: PhantomParams) -> Phantom:
    """Render the cine, labels and query described by ``params`` (see the module docstring)."""
    motion_rng, view_rng, anatomy_rng, speckle_rng, noise_rng, query_rng, nuisance_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(params.seed).spawn(7)
    )
    trace = respiration(params, motion_rng)
    distance = np.abs(trace.phase - trace.reference)
    episodes = hard_negative_episodes(params, trace, view_rng)
    hard = episode_mask(params.frames, episodes)
    if params.tolerance is None:
        tolerance = calibrate_tolerance(distance, ~hard, params.positive_ratio)
    else:
        tolerance = params.tolerance
    labels = ((distance <= tolerance) & ~hard).astype(np.int64)

    fan = make_fan(params.height, params.width, params.fan_angle_deg)
    nuisance = scan_nuisance(params, trace.hold, nuisance_rng)
    rib_side = float(view_rng.choice([-1.0, 1.0]))
    views = frame_views(
        params.frames,
        episodes,
        shift_px=params.probe_shift * params.width,
        rotation_rad=math.radians(params.probe_rotation_deg),
        half_angle=fan.half_angle,
        rib_side=rib_side,
        rng=view_rng,
        jitter_x=nuisance.jitter_x,
        jitter_rotation=nuisance.jitter_rotation,
    )
    axial = trace.phase + trace.cardiac
    renderer = make_renderer(
        fan,
        random_anatomy(fan, params.vessels, rib_side, anatomy_rng),
        params.dynamic_range_db,
        max_displacement=float(np.abs(axial).max()),
    )
    transfer = gaussian_transfer(
        renderer.field_shape,
        params.speckle_axial_px / fan.sample_spacing,
        params.speckle_lateral_beams,
    )
    moves = list(zip(trace.lateral.tolist(), axial.tolist(), strict=True))
    frames = np.empty((params.frames, params.height, params.width), dtype=np.uint8)
    fields = speckle_fields(transfer, params.speckle_corr, speckle_rng)
    for i, field in enumerate(itertools.islice(fields, params.frames)):
        frames[i] = renderer.render(moves[i], views[i], field, noise_rng, nuisance.settings[i])
    ref = _reference_frame(distance, labels, trace.hold & ~nuisance.artifact)
    settings = dataclasses.replace(nuisance.settings[ref], artifact=None)
    query = renderer.render(
        moves[ref], views[ref], filtered_speckle(transfer, query_rng), query_rng, settings
    )
    return Phantom(
        params=params,
        frames=frames,
        labels=labels,
        phase_labels=phase_classes(
            trace.phase, float(trace.reference), float(tolerance), episodes, params.phase_bin
        ),
        phase=trace.phase,
        query=query,
        reference_phase=float(trace.reference),
        reference_frame=ref,
        tolerance=float(tolerance),
        tolerance_calibrated=params.tolerance is None,
        hard_negative=hard,
        breath_hold=trace.hold,
        fan_mask=renderer.conversion.mask,
        episodes=episodes,
        gain_db=nuisance.gain_db,
        jitter=np.stack([nuisance.jitter_x, np.degrees(nuisance.jitter_rotation)], axis=1),
        artifact=nuisance.artifact,
    )


def scan_nuisance(params: PhantomParams, hold: np.ndarray, rng: np.random.Generator) -> Nuisance:
    """Per-frame gain, TGC, contrast, hand jitter and artefacts (see :mod:`.nuisance`).

    Besides the random adjustments, the sonographer re-sets the image once between
    consecutive breath holds, so every hold is seen with its own settings.
    """
    return make_nuisance(
        params.frames,
        params.frame_rate,
        hold=hold,
        gain_db=params.gain_db,
        gain_flicker_db=params.gain_flicker_db,
        tgc_db=params.tgc_db,
        contrast=params.contrast,
        jitter_px=params.jitter_shift * params.width,
        jitter_rotation_rad=math.radians(params.jitter_rotation_deg),
        artifact_rate=params.artifact_rate,
        rng=rng,
    )


def respiration(params: PhantomParams, rng: np.random.Generator) -> BreathingTrace:
    """The breathing trace of the cine, lengths converted to pixels."""
    return breathing_trace(
        np.arange(params.frames) / params.frame_rate,
        period_s=params.breath_period_s,
        amplitude=params.breath_amplitude * params.height,
        variability=params.breath_variability,
        holds=params.breath_holds,
        hold_s=params.hold_seconds,
        ramp_s=params.ramp_seconds,
        hold_level=params.hold_level,
        hysteresis=params.hysteresis,
        cardiac_amplitude=params.cardiac_amplitude * params.height,
        rng=rng,
    )


def hard_negative_episodes(
    params: PhantomParams, trace: BreathingTrace, rng: np.random.Generator
) -> tuple[Episode, ...]:
    """Probe-shift and rib-sweep episodes at the reference depth (only ribs if no shift is set).

    An episode is at most a tenth of the cine long, so a short cine is not all hard negatives.
    """
    moves = params.probe_shift > 0 or params.probe_rotation_deg > 0
    length = min(params.hard_negative_frames, max(params.frames // 10, 1))
    count = episode_count(params.frames, params.hard_negative_rate, length)
    distance = np.abs(trace.phase - trace.reference)
    starts = place_episodes(distance, trace.hold, trace.hold_weight == 0, count, length)
    return make_episodes(starts, length, KINDS if moves else ("rib",), rng)


def _reference_frame(distance: np.ndarray, labels: np.ndarray, hold: np.ndarray) -> int:
    """The positive breath-hold frame nearest the reference depth (any positive if none)."""
    for pool in (hold & (labels == 1), labels == 1):
        if pool.any():
            candidates = np.flatnonzero(pool)
            return int(candidates[np.argmin(distance[candidates])])
    return int(np.argmin(distance))
