"""A seeded held-out split of a labelled dataset, stratified by label.

Each class's members are shuffled by a generator seeded with ``(seed, c)`` (``c``: the class's rank
in sorted order) and the first ``round(fraction x n)`` go to validation, at least one and never all:
a class with a single member stays in training. So the split is reproducible from (dataset,
fraction, seed), keeps the label distribution, and never puts a row in both parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from echoseek.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Row ids of the two parts."""

    train: frozenset[str]
    val: frozenset[str]


def stratified_split(
    ids: Sequence[str], labels: Sequence[int], fraction: float, seed: int
) -> Split:
    """Hold out ``fraction`` of every class (see the module docstring)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"val_fraction: must be in (0, 1), got {fraction}")
    ids_arr, labels_arr = np.asarray(ids, dtype=object), np.asarray(labels, dtype=np.int64)
    val: list[str] = []
    for c, label in enumerate(np.unique(labels_arr)):
        members = ids_arr[labels_arr == label]
        if len(members) < 2:
            continue
        take = min(len(members) - 1, max(1, round(fraction * len(members))))
        order = np.random.default_rng([seed, c]).permutation(len(members))
        val += [str(m) for m in members[order[:take]]]
    held = frozenset(val)
    return Split(train=frozenset(str(i) for i in ids_arr if i not in held), val=held)
