"""Tests for m-per-class batch sampling (single process and simulated DDP ranks)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from echoseek.data.samplers import MPerClassBatchSampler, m_per_class_batches
from echoseek.errors import EchoseekError


def imbalanced_labels(seed: int = 0) -> np.ndarray:
    """7 classes of very different sizes, two of them smaller than m=4."""
    sizes = [60, 25, 12, 6, 4, 3, 1]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(labels)


def class_counts(labels: np.ndarray, batch: list[int] | np.ndarray) -> Counter[int]:
    return Counter(int(c) for c in labels[np.asarray(batch)])


@pytest.mark.parametrize(("m", "batch_size"), [(4, 16), (2, 12), (4, 28), (1, 7)])
def test_every_batch_has_exactly_m_of_each_chosen_class(m: int, batch_size: int) -> None:
    labels = imbalanced_labels()
    batches = m_per_class_batches(labels, m, batch_size, 40, np.random.default_rng(1))
    assert len(batches) == 40
    for batch in batches:
        counts = class_counts(labels, batch)
        assert len(batch) == batch_size
        assert len(counts) == batch_size // m
        assert set(counts.values()) == {m}


def test_large_classes_never_repeat_items_and_small_ones_repeat_evenly() -> None:
    labels = imbalanced_labels()
    members = {c: set(np.flatnonzero(labels == c)) for c in range(7)}
    for batch in m_per_class_batches(labels, 4, 16, 50, np.random.default_rng(2)):
        for c in class_counts(labels, batch):
            picked = [i for i in batch if labels[i] == c]
            assert set(picked) <= members[c]
            if len(members[c]) >= 4:
                assert len(set(picked)) == 4  # no duplicate inside a batch
            else:
                assert len(set(picked)) == len(members[c])  # every member, then repeats


def test_classes_are_visited_uniformly_and_members_cover_the_class() -> None:
    labels = imbalanced_labels()
    batches = m_per_class_batches(labels, 4, 16, 70, np.random.default_rng(3))
    visits = Counter(c for b in batches for c in class_counts(labels, b))
    assert max(visits.values()) - min(visits.values()) <= 1  # 70 * 4 = 280 = 40 per class
    seen = {int(i) for b in batches for i in b if labels[i] == 0}
    assert seen == set(np.flatnonzero(labels == 0))  # 40 * 4 = 160 draws over 60 members


def test_binary_labels_give_half_and_half_batches() -> None:
    labels = np.random.default_rng(4).random(445) < 0.2  # ~20 % positives
    for batch in m_per_class_batches(labels, 32, 64, 10, np.random.default_rng(5)):
        assert labels[batch].sum() == 32


def test_string_labels_are_accepted() -> None:
    labels = np.array(["a", "b", "c", "a", "b", "c", "a"])
    for batch in m_per_class_batches(labels, 2, 4, 5, np.random.default_rng(6)):
        assert sorted(Counter(labels[batch]).values()) == [2, 2]


def test_sampler_is_deterministic_per_seed_and_epoch() -> None:
    labels = imbalanced_labels()
    a = MPerClassBatchSampler(labels, m=4, batch_size=16, seed=7)
    b = MPerClassBatchSampler(labels, m=4, batch_size=16, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    assert list(a) == list(a)  # re-iterating the same epoch replays it
    b.set_epoch(4)
    assert list(a) != list(b)
    other_seed = MPerClassBatchSampler(labels, m=4, batch_size=16, seed=8)
    other_seed.set_epoch(3)
    assert list(a) != list(other_seed)


@pytest.mark.parametrize("replicas", [2, 3])
def test_ranks_get_disjoint_equal_slices_of_one_global_sequence(replicas: int) -> None:
    labels = imbalanced_labels()
    ranks = [
        MPerClassBatchSampler(labels, 4, 8, seed=9, num_replicas=replicas, rank=r)
        for r in range(replicas)
    ]
    for sampler in ranks:
        sampler.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    expected_len = len(labels) // (8 * replicas)
    assert [len(s) for s in ranks] == [len(b) for b in per_rank] == [expected_len] * replicas
    rng = np.random.default_rng([9, 2])
    global_batches = m_per_class_batches(labels, 4, 8, expected_len * replicas, rng)
    for r, batches in enumerate(per_rank):
        assert batches == [g.tolist() for g in global_batches[r::replicas]]
    interleaved = [per_rank[i % replicas][i // replicas] for i in range(len(global_batches))]
    assert interleaved == [g.tolist() for g in global_batches]  # a partition, nothing shared


def test_length_rounding() -> None:
    labels = imbalanced_labels()  # 111 items
    assert len(MPerClassBatchSampler(labels, 4, 16)) == 111 // 16
    assert len(MPerClassBatchSampler(labels, 4, 16, drop_last=False)) == -(-111 // 16)
    assert len(MPerClassBatchSampler(labels, 4, 16, num_replicas=2, rank=1)) == 111 // 32


def test_works_as_a_dataloader_batch_sampler() -> None:
    labels = imbalanced_labels()
    data = TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    sampler = MPerClassBatchSampler(labels, m=4, batch_size=12, seed=10)
    loader = DataLoader(data, batch_sampler=sampler)
    batches = list(loader)
    assert len(batches) == len(sampler)
    for idx, y in batches:
        assert torch.equal(y, torch.as_tensor(labels)[idx])
        assert sorted(Counter(y.tolist()).values()) == [4, 4, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"m": 0, "batch_size": 8}, "m: must be >= 1"),
        ({"m": 3, "batch_size": 8}, "batch_size: must be a multiple of m=3"),
        ({"m": 8, "batch_size": 4}, "batch_size: must be a multiple of m=8"),
        ({"m": 2, "batch_size": 64}, "labels have only 7; use m=16"),
        ({"m": 4, "batch_size": 8, "rank": 2, "num_replicas": 2}, "rank: must be in"),
        ({"m": 4, "batch_size": 8, "num_replicas": 0}, "num_replicas: must be >= 1"),
        ({"m": 16, "batch_size": 80, "num_replicas": 2}, "batch_size: 111 labels fill no batch"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EchoseekError, match=message):
        MPerClassBatchSampler(imbalanced_labels(), **kwargs)


def test_bad_labels_raise() -> None:
    with pytest.raises(EchoseekError, match="labels: expected a non-empty 1-D"):
        m_per_class_batches(np.zeros((2, 2)), 1, 2, 1, np.random.default_rng(0))
    with pytest.raises(EchoseekError, match="labels: expected a non-empty 1-D"):
        MPerClassBatchSampler([], 1, 2)
