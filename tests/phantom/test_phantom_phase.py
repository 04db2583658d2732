"""Respiratory-phase classes: the bin rule against a loop, and their relation to the labels."""

from __future__ import annotations

import numpy as np
import pytest

from echoseek.errors import ConfigError
from echoseek.phantom.episodes import Episode
from echoseek.phantom.generate import PhantomParams, generate_phantom
from echoseek.phantom.phase import phase_classes


def test_bins_match_a_loop_and_episodes_get_their_own_classes() -> None:
    rng = np.random.default_rng(3)
    phase = rng.uniform(0, 12, 200)
    episodes = (Episode(10, 15, "probe"), Episode(100, 105, "rib"))
    got = phase_classes(phase, reference=4.0, tolerance=0.5, episodes=episodes, bin_width=4.0)
    expected = [round((p - 4.0) / 2.0) for p in phase]
    lowest = min(expected)
    top = max(expected) - lowest
    for i in range(200):
        if 10 <= i < 15:
            assert got[i] == top + 1
        elif 100 <= i < 105:
            assert got[i] == top + 2
        else:
            assert got[i] == expected[i] - lowest


def test_every_positive_shares_one_class_without_the_hard_negatives() -> None:
    p = generate_phantom(PhantomParams(frames=120, height=64, width=64, seed=2))
    positives = p.phase_labels[p.labels == 1]
    assert len(set(positives.tolist())) == 1  # bins centred on the reference, 4 tol wide
    assert not np.isin(p.phase_labels[p.hard_negative], positives).any()
    assert len(np.unique(p.phase_labels)) > 3


def test_bad_bin_width_is_refused() -> None:
    with pytest.raises(ConfigError, match="phase_bin"):
        PhantomParams(phase_bin=0.0)
