"""What a phantom is: :class:`PhantomParams` (everything that determines one, validated) and
:class:`Phantom` (the generated cine with its labels and provenance).

:func:`echoseek.phantom.generate.generate_phantom` makes a :class:`Phantom` from its params;
:func:`echoseek.phantom.write.write_phantom` writes one to disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echoseek.errors import ConfigError
from echoseek.phantom.episodes import Episode

AUTO_HOLD_SHARE = 0.65  # automatic holds cover this share of the positive target


@dataclass(frozen=True)
class PhantomParams:
    """Everything that determines a phantom; the same params always give the same bytes.

    Lengths given as fractions are relative to the image height (``breath_amplitude``,
    ``cardiac_amplitude``) or width (``probe_shift``), so a phantom keeps its look at any size.
    """

    frames: int = 445
    height: int = 128
    width: int = 128
    seed: int = 0
    positive_ratio: float = 0.2  # target share of positive frames (tolerance calibration)
    tolerance: float | None = None  # px of |phase - reference|; None = calibrate to the ratio
    frame_rate: float = 15.0  # frames per second
    breath_period_s: float = 4.0
    breath_amplitude: float = 0.1  # mean diaphragm excursion, fraction of the height
    breath_variability: float = 0.15  # relative spread of each cycle's period and excursion
    breath_holds: int = 3
    breath_hold_s: float | None = None  # per hold; None = AUTO_HOLD_SHARE of the positives
    hold_level: float = 0.3  # reference depth, fraction of the excursion (0 = end-expiration)
    hysteresis: float = 0.1  # lateral loop of the liver, fraction of the excursion
    cardiac_amplitude: float = 0.003  # cardiac pulsation of the anatomy, fraction of the height
    speckle_corr: float = 0.5  # frame-to-frame correlation rho of the scatterer field
    speckle_axial_px: float = 0.6  # PSF axial sigma, px
    speckle_lateral_beams: float = 1.0  # PSF lateral sigma, beams
    hard_negative_rate: float = 0.05  # share of frames in probe-shift / rib-sweep episodes
    hard_negative_frames: int = 5  # frames per episode (at most a tenth of the cine)
    probe_shift: float = 0.06  # lateral probe translation, fraction of the width
    probe_rotation_deg: float = 4.0
    fan_angle_deg: float = 75.0
    vessels: int = 3
    dynamic_range_db: float = 50.0
    # label-preserving nuisances (phantom_nuisance), 0 disables each
    gain_db: float = 3.0  # std of the overall gain setting, re-set at each adjustment, dB
    gain_flicker_db: float = 1.0  # std of the slow auto-gain flicker, dB
    tgc_db: float = 3.0  # std of each TGC depth slider, re-set at each adjustment, dB
    contrast: float = 0.1  # std of the log dynamic-range factor, re-set at each adjustment
    jitter_shift: float = 0.008  # std of the hand's lateral jitter, fraction of the width
    jitter_rotation_deg: float = 0.5  # std of the hand's rotation jitter
    artifact_rate: float = 0.08  # share of frames with lost contact or reverberation
    phase_bin: float = 4.0  # width of a training phase class, in tolerances (phantom_phase)

    def __post_init__(self) -> None:
        for message in _problems(self):
            raise ConfigError(message)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last frame."""
        return (self.frames - 1) / self.frame_rate

    @property
    def hold_seconds(self) -> float:
        """Length of each breath-hold plateau (``breath_hold_s`` or the automatic choice)."""
        if self.breath_hold_s is not None:
            return self.breath_hold_s
        positive_s = self.positive_ratio * self.frames / self.frame_rate
        return AUTO_HOLD_SHARE * positive_s / self.breath_holds

    @property
    def ramp_seconds(self) -> float:
        """Length of the blend into and out of each hold."""
        return min(0.25 * self.breath_period_s, 0.1 * self.duration_s)


def _problems(p: PhantomParams) -> list[str]:
    """One message per invalid field, in field order (empty when all are valid)."""
    checks = [
        (p.frames >= 10, "frames", "must be at least 10", p.frames),
        (32 <= p.height <= 4096, "height", "must be between 32 and 4096", p.height),
        (32 <= p.width <= 4096, "width", "must be between 32 and 4096", p.width),
        (0 < p.positive_ratio < 1, "positive_ratio", "must be in (0, 1)", p.positive_ratio),
        (p.tolerance is None or p.tolerance > 0, "tolerance", "must be positive", p.tolerance),
        (p.frame_rate > 0, "frame_rate", "must be positive", p.frame_rate),
        (p.breath_period_s > 0, "breath_period_s", "must be positive", p.breath_period_s),
        (0 < p.breath_amplitude <= 0.3, "breath_amplitude", "must be in (0, 0.3]",
         p.breath_amplitude),
        (0 <= p.breath_variability <= 0.5, "breath_variability", "must be in [0, 0.5]",
         p.breath_variability),
        (1 <= p.breath_holds <= 10, "breath_holds", "must be between 1 and 10", p.breath_holds),
        (p.breath_hold_s is None or p.breath_hold_s > 0, "breath_hold_s", "must be positive",
         p.breath_hold_s),
        (0 <= p.hold_level <= 1, "hold_level", "must be in [0, 1]", p.hold_level),
        (0 <= p.hysteresis <= 1, "hysteresis", "must be in [0, 1]", p.hysteresis),
        (0 <= p.cardiac_amplitude <= 0.05, "cardiac_amplitude", "must be in [0, 0.05]",
         p.cardiac_amplitude),
        (0 <= p.speckle_corr < 1, "speckle_corr", "must be in [0, 1)", p.speckle_corr),
        (0.2 <= p.speckle_axial_px <= 5, "speckle_axial_px", "must be in [0.2, 5]",
         p.speckle_axial_px),
        (0.2 <= p.speckle_lateral_beams <= 5, "speckle_lateral_beams", "must be in [0.2, 5]",
         p.speckle_lateral_beams),
        (0 <= p.hard_negative_rate <= 0.5, "hard_negative_rate", "must be in [0, 0.5]",
         p.hard_negative_rate),
        (p.hard_negative_frames >= 1, "hard_negative_frames", "must be at least 1",
         p.hard_negative_frames),
        (p.phase_bin > 0, "phase_bin", "must be > 0", p.phase_bin),
        (0 <= p.probe_shift <= 0.3, "probe_shift", "must be in [0, 0.3]", p.probe_shift),
        (0 <= p.probe_rotation_deg <= 30, "probe_rotation_deg", "must be in [0, 30]",
         p.probe_rotation_deg),
        (30 <= p.fan_angle_deg <= 120, "fan_angle_deg", "must be in [30, 120]", p.fan_angle_deg),
        (0 <= p.vessels <= 8, "vessels", "must be between 0 and 8", p.vessels),
        (20 <= p.dynamic_range_db <= 100, "dynamic_range_db", "must be in [20, 100]",
         p.dynamic_range_db),
        (0 <= p.gain_db <= 12, "gain_db", "must be in [0, 12]", p.gain_db),
        (0 <= p.gain_flicker_db <= 6, "gain_flicker_db", "must be in [0, 6]", p.gain_flicker_db),
        (0 <= p.tgc_db <= 12, "tgc_db", "must be in [0, 12]", p.tgc_db),
        (0 <= p.contrast <= 0.5, "contrast", "must be in [0, 0.5]", p.contrast),
        (0 <= p.jitter_shift <= 0.05, "jitter_shift", "must be in [0, 0.05]", p.jitter_shift),
        (0 <= p.jitter_rotation_deg <= 5, "jitter_rotation_deg", "must be in [0, 5]",
         p.jitter_rotation_deg),
        (0 <= p.artifact_rate <= 0.5, "artifact_rate", "must be in [0, 0.5]", p.artifact_rate),
    ]  # fmt: skip
    problems = [f"{name}: {rule}, got {value!r}" for ok, name, rule, value in checks if not ok]
    if not problems:
        problems += _timing_problems(p)
    return problems


def _timing_problems(p: PhantomParams) -> list[str]:
    """The breath holds and their ramps must leave time for free breathing."""
    needed = p.breath_holds * (p.hold_seconds + 2 * p.ramp_seconds)
    if needed <= 0.8 * p.duration_s:
        return []
    auto = " (automatic)" if p.breath_hold_s is None else ""
    return [
        f"breath_hold_s: {p.breath_holds} hold(s) of {p.hold_seconds:.1f} s{auto} with "
        f"{p.ramp_seconds:.1f} s ramps do not fit in {p.duration_s:.1f} s of cine "
        f"({p.frames} frames at {p.frame_rate:g} fps); use fewer or shorter holds or more frames"
    ]


@dataclass(frozen=True, eq=False)
class Phantom:
    """A generated cine with its labels and provenance."""

    params: PhantomParams
    frames: np.ndarray  # NxHxW uint8
    labels: np.ndarray  # (N,) int64, 1 = same respiratory state and view as the reference
    phase_labels: np.ndarray  # (N,) int64 respiratory-phase class (phantom_phase), for training
    phase: np.ndarray  # (N,) float64 respiratory displacement, px
    query: np.ndarray  # HxW uint8, the reference frame with fresh speckle
    reference_phase: float  # breath-hold reference depth, px
    reference_frame: int  # the frame the query re-renders
    tolerance: float  # px; positive iff |phase - reference_phase| <= tolerance and no view change
    tolerance_calibrated: bool
    hard_negative: np.ndarray  # (N,) bool, frames in a probe-shift or rib-sweep episode
    breath_hold: np.ndarray  # (N,) bool, frames on a breath-hold plateau
    fan_mask: np.ndarray  # HxW bool, True inside the sector
    episodes: tuple[Episode, ...]
    gain_db: np.ndarray  # (N,) overall receive gain (settings + flicker) about the nominal, dB
    jitter: np.ndarray  # (N, 2) hand jitter: lateral px, rotation degrees
    artifact: np.ndarray  # (N,) bool, frames with lost contact or reverberation

    @property
    def positives(self) -> int:
        """Number of positive frames."""
        return int(self.labels.sum())

    @property
    def positive_ratio(self) -> float:
        """Share of positive frames."""
        return self.positives / len(self.labels)
