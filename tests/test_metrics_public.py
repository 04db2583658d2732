"""``echoseek.metrics`` keeps the public metric names: each is the function of
:mod:`echoseek.evaluation.ranking`, their one home."""

from __future__ import annotations

import echoseek.metrics
from echoseek.evaluation import ranking


def test_public_names_are_the_ranking_functions() -> None:
    for name in ("average_precision", "mean_average_precision", "precision_at_k", "rankme"):
        assert name in echoseek.metrics.__all__
    for name in echoseek.metrics.__all__:
        assert getattr(echoseek.metrics, name) is getattr(ranking, name)
