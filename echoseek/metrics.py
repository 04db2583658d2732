"""The public metric names of ``echoseek.metrics``.

Their home is :mod:`echoseek.evaluation.ranking`; this module only re-exports them, so code
written against ``echoseek.metrics.average_precision`` and friends keeps working. Code inside
echoseek imports from :mod:`echoseek.evaluation.ranking`.
"""

from __future__ import annotations

from echoseek.evaluation.ranking import (
    average_precision,
    collapse_std,
    knn_accuracy,
    lift_at_k,
    map_at_r,
    mean_average_precision,
    precision_at_k,
    r_precision,
    ranking_metrics,
    rankme,
    recall_at_k,
)

__all__ = [
    "average_precision",
    "collapse_std",
    "knn_accuracy",
    "lift_at_k",
    "map_at_r",
    "mean_average_precision",
    "precision_at_k",
    "r_precision",
    "ranking_metrics",
    "rankme",
    "recall_at_k",
]
