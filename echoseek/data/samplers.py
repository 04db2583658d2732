"""M-per-class batch sampling: every batch holds ``batch_size // m`` classes, ``m`` items each.

Ranking losses such as FastAP (Cakir et al., CVPR 2019) score each item against the positives
in its batch; a random batch from a corpus with few positives may hold none. Sampling m items
from each of P = batch_size / m classes (the "PK" sampling of Hermans et al., "In Defense of
the Triplet Loss", 2017) guarantees m - 1 positives per item.

Classes are drawn uniformly, not in proportion to their size: each batch takes the next P
classes of a shuffled cycle over all classes, so every class appears equally often. Items are
drawn the same way within a class: a shuffled cycle over its members, so every member is used
once before any is reused. A class with at least m members never repeats an item inside a
batch; a smaller class is sampled with replacement (members repeat, as evenly as possible).
With binary pseudo-labels (2 classes), P must be 2 and every batch is half positives, half
negatives.

A batch never holds a class twice, so P may not exceed the number of classes: choose
``m >= batch_size / num_classes`` (``m = batch_size // 2`` for binary labels). Letting classes
repeat would only make "m per class" false without adding positives a larger m cannot give.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from echoseek.errors import EchoseekError


def m_per_class_batches(
    labels: Any, m: int, batch_size: int, num_batches: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``num_batches`` index arrays of length ``batch_size``, m indices from each of P classes.

    ``labels`` is a 1-D sequence of sortable class labels (ints, strings, bools); the returned
    arrays index into it and hold class blocks contiguously (m items of one class, then the
    next). No state but ``rng``, which it advances: the same generator state gives the same
    batches. Used by :class:`MPerClassBatchSampler` and usable as is in Ray Data pipelines.
    """
    classes = _class_members(labels)
    per_batch = _classes_per_batch(m, batch_size, len(classes))
    if num_batches < 0:
        raise EchoseekError(f"num_batches: must be >= 0, got {num_batches}")
    class_cycle = _Cycle(np.arange(len(classes)), rng)
    member_cycles = [_Cycle(members, rng) for members in classes]
    return [
        np.concatenate([member_cycles[c].take(m) for c in class_cycle.take(per_batch)])
        for _ in range(num_batches)
    ]


class MPerClassBatchSampler(Sampler[list[int]]):
    """A batch sampler (``DataLoader(batch_sampler=...)``) of m-per-class index lists.

    Epoch e draws one global sequence of ``len(self) * num_replicas`` batches from a generator
    seeded with (seed, e); rank r takes batches r, r + R, r + 2R, ... . Every rank therefore
    sees the same number of batches, ranks never share a batch, and the whole run is
    reproducible: call :meth:`set_epoch` before each epoch, as with ``DistributedSampler``.

    An epoch has about ``len(labels) / (batch_size * num_replicas)`` batches per rank, so the
    ranks together draw about one pass over the data: rounded down with ``drop_last`` (the
    default), up otherwise. Batches are always full; ``drop_last=False`` only adds the one
    batch that covers the remainder.
    """

    def __init__(
        self,
        labels: Sequence[Any] | np.ndarray,
        m: int,
        batch_size: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.labels = np.asarray(labels)
        _classes_per_batch(m, batch_size, len(_class_members(self.labels)))
        if num_replicas < 1:
            raise EchoseekError(f"num_replicas: must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise EchoseekError(f"rank: must be in [0, {num_replicas}), got {rank}")
        self.m = m
        self.batch_size = batch_size
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0
        self._num_batches = _batches_per_rank(len(self.labels), batch_size, num_replicas, drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batch sequence the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self._num_batches * self.num_replicas
        batches = m_per_class_batches(self.labels, self.m, self.batch_size, total, rng)
        for batch in batches[self.rank :: self.num_replicas]:
            yield batch.tolist()


class _Cycle:
    """Endless shuffled passes over ``items``; ``take(n)`` never repeats within n <= len."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator) -> None:
        self.items = items
        self.rng = rng
        self.order = rng.permutation(items)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        out = self.order[self.pos : self.pos + n]
        self.pos += len(out)
        while len(out) < n:
            self._reshuffle(avoid=out)
            more = self.order[: n - len(out)]
            self.pos = len(more)
            out = np.concatenate([out, more])
        return out

    def _reshuffle(self, avoid: np.ndarray) -> None:
        """Start a new pass; items in ``avoid`` go last so a take does not repeat them."""
        order = self.rng.permutation(self.items)
        late = np.isin(order, avoid)
        self.order = np.concatenate([order[~late], order[late]])


def _class_members(labels: Any) -> list[np.ndarray]:
    """Indices of each distinct label, in sorted label order."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise EchoseekError(f"labels: expected a non-empty 1-D sequence, got shape {y.shape}")
    _, inverse = np.unique(y, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse))[:-1]
    return np.split(order, bounds)


def _classes_per_batch(m: int, batch_size: int, num_classes: int) -> int:
    if m < 1:
        raise EchoseekError(f"m: must be >= 1, got {m}")
    if batch_size < m or batch_size % m != 0:
        raise EchoseekError(f"batch_size: must be a multiple of m={m}, got {batch_size}")
    per_batch = batch_size // m
    if per_batch > num_classes:
        fits = next(
            d
            for d in range(m, batch_size + 1)
            if batch_size % d == 0 and batch_size // d <= num_classes
        )
        raise EchoseekError(
            f"m: batch_size {batch_size} / m {m} = {per_batch} classes per batch, but labels "
            f"have only {num_classes}; use m={fits}"
        )
    return per_batch


def _batches_per_rank(num_items: int, batch_size: int, num_replicas: int, drop_last: bool) -> int:
    per_step = batch_size * num_replicas
    count = num_items // per_step if drop_last else -(-num_items // per_step)
    if count == 0:
        raise EchoseekError(
            f"batch_size: {num_items} labels fill no batch of {batch_size} x {num_replicas} "
            "replicas; use drop_last=False or a smaller batch_size"
        )
    return count
