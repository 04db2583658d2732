"""MemoryBank updates, alone and across two gloo ranks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from echoseek.models import MemoryBank, gather_across_ranks
from echoseek.models.ssl.instdisc import mean_across_ranks


def test_initial_bank_is_unit_and_seeded() -> None:
    a, b, c = MemoryBank(50, 8, seed=1), MemoryBank(50, 8, seed=1), MemoryBank(50, 8, seed=2)
    torch.testing.assert_close(a.vectors.norm(dim=1), torch.ones(50))
    assert torch.equal(a.vectors, b.vectors) and not torch.equal(a.vectors, c.vectors)
    assert "vectors" in dict(a.named_buffers())


def test_update_is_momentum_then_normalise() -> None:
    bank = MemoryBank(6, 4)
    old = bank.vectors.clone()
    index = torch.tensor([4, 1])
    features = F.normalize(torch.randn(2, 4, generator=torch.Generator().manual_seed(0)))
    bank.update(index, features, momentum=0.25)
    torch.testing.assert_close(
        bank.vectors[index], F.normalize(0.25 * old[index] + 0.75 * features)
    )
    rest = torch.tensor([0, 2, 3, 5])
    assert torch.equal(bank.vectors[rest], old[rest])


def test_duplicate_indices_use_first_occurrence() -> None:
    bank = MemoryBank(5, 3)
    old = bank.vectors.clone()
    features = torch.eye(3)
    bank.update(torch.tensor([2, 2, 0]), features)
    torch.testing.assert_close(
        bank.vectors[2], F.normalize(0.5 * old[2] + 0.5 * features[0], dim=0)
    )
    torch.testing.assert_close(
        bank.vectors[0], F.normalize(0.5 * old[0] + 0.5 * features[2], dim=0)
    )


def test_sample_is_uniform_in_range() -> None:
    drawn = MemoryBank(7, 2).sample(7000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(drawn, minlength=7)
    assert drawn.min() >= 0 and drawn.max() < 7
    assert counts.min() > 850 and counts.max() < 1150  # 1000 expected per row


def test_single_process_gather_is_identity() -> None:
    index, features = torch.tensor([3, 1]), torch.randn(2, 4, requires_grad=True)
    got_index, got_features = gather_across_ranks(index, features)
    assert torch.equal(got_index, index) and torch.equal(got_features, features)
    assert not got_features.requires_grad


# Each rank sees different samples (and a different count); row 3 is seen by both ranks.
RANK_INDEX = [torch.tensor([0, 3, 5]), torch.tensor([3, 7])]


def rank_features(rank: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 + rank)
    return F.normalize(torch.randn(len(RANK_INDEX[rank]), 4, generator=generator))


def _bank_worker(rank: int, world: int, rendezvous: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        bank = MemoryBank(10, 4, seed=0)
        index, features = gather_across_ranks(RANK_INDEX[rank], rank_features(rank))
        bank.update(index, features)
        mean = mean_across_ranks(torch.tensor(float(rank)))
        torch.save({"bank": bank.vectors, "mean": mean}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_rank_update_keeps_banks_identical(tmp_path: Path) -> None:
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_bank_worker, args=(2, rendezvous, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert torch.equal(results[0]["bank"], results[1]["bank"])
    single = MemoryBank(10, 4, seed=0)
    single.update(torch.cat(RANK_INDEX), torch.cat([rank_features(0), rank_features(1)]))
    torch.testing.assert_close(results[0]["bank"], single.vectors)
    assert results[0]["mean"].item() == pytest.approx(0.5)
    # row 7 exists only on rank 1: rank 0's bank still got it
    assert not torch.equal(results[0]["bank"][7], MemoryBank(10, 4, seed=0).vectors[7])
