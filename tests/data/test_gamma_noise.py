"""Tests for the gamma noise sampler: its quantile table against scipy's, its samples against
the gamma law, and its reproducibility under a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from echoseek.data.gamma_noise import TABLE_BINS, TAIL, gamma_noise, gamma_quantiles

CPU = torch.device("cpu")


@pytest.mark.parametrize("a", [0.3, 1.0, 2.0, 25.0, 400.0])
def test_quantile_table_matches_scipy(a: float) -> None:
    bins = 256
    p = np.arange(bins + 1) / bins
    p[-1] = 1 - TAIL
    q = gamma_quantiles(a, bins).numpy()
    np.testing.assert_allclose(q, stats.gamma(a).ppf(p), rtol=1e-5, atol=0)
    np.testing.assert_allclose(stats.gamma(a).cdf(q[1:128]), p[1:128], rtol=1e-6)
    np.testing.assert_allclose(stats.gamma(a).sf(q[128:-1]), 1 - p[128:-1], rtol=1e-6)
    assert stats.gamma(a).sf(q[-1]) == pytest.approx(TAIL, rel=1e-6)  # the cut, precise


@pytest.mark.parametrize("a", [25.0, 2.0, 0.5])
def test_samples_follow_the_gamma_law(a: float) -> None:
    draws = gamma_noise((200_000,), a, torch.Generator().manual_seed(3), CPU).double().numpy()
    result = stats.kstest(draws, stats.gamma(a).cdf)
    assert result.pvalue > 1e-3
    assert draws.min() >= 0
    assert draws.max() <= stats.gamma(a).ppf(1 - TAIL) * (1 + 1e-6)


def test_interpolation_fills_each_bin() -> None:
    """Within one bin the samples spread over [q_k, q_k+1] (not only its end points): the
    sampler's 1/B bound on the CDF error needs the linear part."""
    q = gamma_quantiles(25.0, TABLE_BINS)
    draws = gamma_noise((100_000,), 25.0, torch.Generator().manual_seed(0), CPU).double()
    near = (draws - q[TABLE_BINS // 2]).abs() < (q[TABLE_BINS // 2 + 1] - q[TABLE_BINS // 2]) / 2
    assert 0 < int(near.sum()) < 40  # about 100_000 / TABLE_BINS / 2 = 3 expected


def test_a_seed_reproduces_the_noise_and_another_changes_it() -> None:
    def draw(seed: int) -> torch.Tensor:
        return gamma_noise((3, 1, 8, 8), 4.0, torch.Generator().manual_seed(seed), CPU)

    assert draw(1).shape == (3, 1, 8, 8)
    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_nonpositive_concentration_is_refused() -> None:
    with pytest.raises(ValueError, match="concentration"):
        gamma_quantiles(0.0, 16)
