"""Hard negatives: probe shifts and rib shadows sweeping in, at the reference depth.

An *episode* is a run of consecutive frames at the breath-hold reference depth seen through a
different view. The first falls on a breath-hold plateau when the plateau is at least twice as
long (the hardest negatives: exactly the reference depth); the others are centred where free
breathing passes closest to the reference depth. Two kinds alternate:

* ``probe``: the probe slides sideways and rocks about its apex (lateral translation and a small
  rotation of the whole scene under the fixed fan), growing from 60 % to 100 % of the set
  amplitude over the episode, as when the sonographer's hand drifts and comes back. The slide
  adds to the hand jitter every frame has (:mod:`.nuisance`), in the direction the
  jitter already leans over the episode, and is at least 60 % of ``probe_shift``: well beyond
  the jitter's own clipped range at the defaults;
* ``rib``: a rib enters the fan from the side opposite the fixed rib and its acoustic shadow
  sweeps inward (the probe slid over an intercostal edge).

Label rule: a frame is positive iff ``|phase - reference| <= tolerance`` and it is in no
episode; episode frames are the hard negatives. Hand jitter is not a view change.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

KINDS = ("probe", "rib")


@dataclass(frozen=True)
class Episode:
    """Frames ``[start, stop)`` seen through a changed view of kind ``probe`` or ``rib``."""

    start: int
    stop: int
    kind: str


@dataclass(frozen=True)
class View:
    """How a frame's view differs from the reference view (the default is no change)."""

    shift_x: float = 0.0  # lateral probe translation, px
    rotation: float = 0.0  # probe rotation about the apex, radians
    rib_angle: float | None = None  # beam angle of a transient rib, radians


def episode_count(frames: int, rate: float, length: int) -> int:
    """Episodes for about ``rate * frames`` hard-negative frames (at least one if rate > 0)."""
    if rate <= 0:
        return 0
    return max(1, round(rate * frames / length))


def place_episodes(
    distance: np.ndarray,
    hold: np.ndarray,
    free: np.ndarray,
    count: int,
    length: int,
    gap: int = 2,
) -> list[int]:
    """Start frames of up to ``count`` episodes of ``length`` frames.

    The first goes three quarters of the way into the first ``hold`` plateau that is at least
    ``2 length`` long (its middle, nearest the reference, stays positive). The rest are placed
    greedily by increasing ``distance`` (``|phase - reference|``) on ``free`` frames (free
    breathing), ``gap`` frames clear of each other. Fewer are returned if fewer fit.
    """
    n = len(distance)
    taken = np.zeros(n, dtype=bool)
    starts: list[int] = []
    for run_start, run_stop in _runs(hold):
        if count > 0 and run_stop - run_start >= 2 * length:
            start = min(run_start + 3 * (run_stop - run_start) // 4 - length // 2,
                        run_stop - length)  # fmt: skip
            taken[start : start + length] = True
            starts.append(start)
            break
    for centre in np.argsort(distance, kind="stable"):
        if len(starts) >= count:
            break
        start = int(centre) - length // 2
        stop = start + length
        if start < 0 or stop > n or not free[start:stop].all():
            continue
        if taken[max(start - gap, 0) : stop + gap].any():
            continue
        taken[start:stop] = True
        starts.append(start)
    return sorted(starts)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def make_episodes(
    starts: list[int], length: int, kinds: tuple[str, ...], rng: np.random.Generator
) -> tuple[Episode, ...]:
    """Assign kinds in turn (from a random first kind) to episodes starting at ``starts``."""
    first = int(rng.integers(len(kinds)))
    return tuple(
        Episode(s, s + length, kinds[(first + i) % len(kinds)]) for i, s in enumerate(starts)
    )


def episode_mask(frames: int, episodes: tuple[Episode, ...]) -> np.ndarray:
    """(N,) bool, True on every episode frame."""
    mask = np.zeros(frames, dtype=bool)
    for ep in episodes:
        mask[ep.start : ep.stop] = True
    return mask


def frame_views(
    frames: int,
    episodes: tuple[Episode, ...],
    *,
    shift_px: float,
    rotation_rad: float,
    half_angle: float,
    rib_side: float,
    rng: np.random.Generator,
    jitter_x: np.ndarray | None = None,
    jitter_rotation: np.ndarray | None = None,
) -> list[View]:
    """One :class:`View` per frame: the hand jitter (px, radians; none if not given), plus the
    episode's probe slide or transient rib on episode frames."""
    jx = np.zeros(frames) if jitter_x is None else np.asarray(jitter_x, dtype=np.float64)
    jr = np.zeros(frames) if jitter_rotation is None else np.asarray(jitter_rotation, np.float64)
    views = [View(shift_x=float(x), rotation=float(r)) for x, r in zip(jx, jr, strict=True)]
    for ep in episodes:
        span = slice(ep.start, ep.stop)
        grow = np.linspace(0.6, 1.0, ep.stop - ep.start)
        if ep.kind == "probe":
            sx, sr = rng.choice([-1.0, 1.0], size=2)
            sx = _direction(jx[span], sx)
            sr = _direction(jr[span], sr)
            for i, g in enumerate(grow):
                base = views[ep.start + i]
                views[ep.start + i] = View(
                    shift_x=base.shift_x + sx * g * shift_px,
                    rotation=base.rotation + sr * g * rotation_rad,
                )
        else:
            inward = np.linspace(0.9, 0.45, ep.stop - ep.start)
            for i, f in enumerate(inward):
                base = views[ep.start + i]
                views[ep.start + i] = dataclasses.replace(
                    base, rib_angle=-rib_side * f * half_angle
                )
    return views


def _direction(jitter: np.ndarray, default: float) -> float:
    """Sign of the jitter's mean over an episode (``default`` when there is no jitter)."""
    mean = float(jitter.mean()) if jitter.size else 0.0
    return default if mean == 0.0 else math.copysign(1.0, mean)
