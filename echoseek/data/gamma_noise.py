"""Gamma-distributed pixel noise (the augmentation's speckle), drawn by inverting the CDF.

One uniform per pixel is read through a table of the gamma quantile function with linear
interpolation. A rejection sampler (Marsaglia & Tsang, ACM TOMS 2000) needs a normal and a
uniform per pixel and redraws the rejected ones; on a CPU the two draws are most of its cost
(random number generation with a seeded generator runs on one thread), and on a GPU its
redraw loop waits for the device. Here every shape is fixed and one draw is made per pixel.
"""

from __future__ import annotations

import functools
import math

import torch

TABLE_BINS = 2**14  # equal-probability bins of the quantile table: KS error <= 1 / TABLE_BINS
TAIL = 1e-12  # the table's last point is Q(1 - TAIL), where the unbounded right tail is cut


def gamma_noise(
    shape: tuple[int, ...], concentration: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Gamma(concentration, 1) samples from ``generator`` on ``device``.

    With B bins and the table q_k = Q(k / B) (Q the quantile function, q_B = Q(1 - TAIL)), a
    uniform u gives k = ⌊uB⌋ and the sample q_k + (uB - k)(q_{k+1} - q_k). A sample lands in
    [q_k, q_{k+1}] exactly when the true law's would, with probability 1/B each, so the sampled
    CDF is within 1/B of the gamma CDF everywhere (Kolmogorov–Smirnov distance <= 1/B).
    """
    start, slope = _table(float(concentration), torch.device(device))
    position = torch.rand(math.prod(shape), generator=generator, device=device).mul_(TABLE_BINS)
    bins = position.long().clamp_(max=TABLE_BINS - 1)
    noise = torch.take(start, bins).addcmul_(torch.take(slope, bins), position.sub_(bins))
    return noise.view(shape)


@functools.lru_cache(maxsize=8)
def _table(concentration: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(q_k, q_{k+1} - q_k) for k < B, float32 on ``device``: one table per speckle level."""
    q = gamma_quantiles(concentration, TABLE_BINS).float()
    return q[:-1].contiguous().to(device), q.diff().to(device)


def gamma_quantiles(concentration: float, bins: int) -> torch.Tensor:
    """Q(k / bins) for k = 0..bins of Gamma(concentration, 1), float64, the last point at
    1 - TAIL: the regularised incomplete gamma inverted by bisection on
    [0, a + 40√a + 40], 64 halvings (below float64's resolution). The lower half compares
    P(a, x) with p, the upper half the complement 1 - P(a, x) with 1 - p (``gammaincc``),
    so that the tail points keep their precision."""
    if concentration <= 0:
        raise ValueError(f"concentration: must be > 0, got {concentration}")
    k = torch.arange(bins + 1, dtype=torch.float64)
    p, upper = k / bins, (bins - k) / bins
    p[-1], upper[-1] = 1 - TAIL, TAIL
    a = torch.full_like(p, concentration)
    low = torch.zeros_like(p)
    high = torch.full_like(p, concentration + 40 * math.sqrt(concentration) + 40)
    lower_half = p < 0.5
    for _ in range(64):
        mid = (low + high) / 2
        below = torch.where(
            lower_half, torch.special.gammainc(a, mid) < p, torch.special.gammaincc(a, mid) > upper
        )
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return torch.where(p == 0, 0.0, (low + high) / 2)  # Q(0) = 0 exactly
