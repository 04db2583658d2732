"""GlobalNTXentLoss and GlobalBarlowTwinsLoss: with DDP over 2 gloo ranks, the loss and the
DDP-averaged gradients equal the single-process ones on the concatenated batch; the per-rank
local loss (what the methods computed before) does not."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from echoseek.losses import BarlowTwinsLoss, GlobalBarlowTwinsLoss, GlobalNTXentLoss, NTXentLoss
from echoseek.losses.distributed import all_gather_sum_grad, all_reduce_sum, world_size

IN_DIM, OUT_DIM = 6, 5
PairLoss = Callable[[Tensor, Tensor], Tensor]
LOSSES: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], nn.Module]]] = {
    "ntxent": (lambda: NTXentLoss(temperature=0.3), GlobalNTXentLoss),
    "barlow": (lambda: BarlowTwinsLoss(lambd=0.05), GlobalBarlowTwinsLoss),
}


def _views(total: int, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x1, x2 = (torch.randn(total, IN_DIM, generator=gen, dtype=torch.float64) for _ in range(2))
    return x1, x2


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(IN_DIM, OUT_DIM).double()


def _grads(model: nn.Module) -> list[Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _run(
    model: nn.Module, loss_fn: PairLoss, x1: Tensor, x2: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """loss_fn(model(x1), model(x2)) and backward; returns the loss and both embedding grads."""
    z1, z2 = model(x1), model(x2)  # NxOUT_DIM
    z1.retain_grad()
    z2.retain_grad()
    loss = loss_fn(z1, z2)
    loss.backward()
    assert z1.grad is not None and z2.grad is not None
    return loss.detach(), z1.grad, z2.grad


def _check_one_case(rank: int, name: str, sizes: list[int], seed: int) -> None:
    make, wrap = LOSSES[name]
    x1, x2 = _views(sum(sizes), seed)
    start = sum(sizes[:rank])
    local = slice(start, start + sizes[rank])
    world = len(sizes)
    # Single-process reference on the concatenated batch.
    reference = _model(seed)
    ref_loss, ref_g1, ref_g2 = _run(reference, make(), x1, x2)
    # This rank's share, through DDP (which averages parameter gradients over ranks).
    model = _model(seed)
    loss, g1, g2 = _run(DistributedDataParallel(model), wrap(make()), x1[local], x2[local])

    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(_grads(model), _grads(reference), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
    # Local embedding gradients are W × the single-process ones; DDP's 1/W averaging undoes it.
    torch.testing.assert_close(g1 / world, ref_g1[local], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g2 / world, ref_g2[local], rtol=1e-9, atol=1e-12)

    # The old behaviour, the plain loss on each rank's batch, is not the global one.
    old_model = _model(seed)
    old_loss, _, _ = _run(DistributedDataParallel(old_model), make(), x1[local], x2[local])
    mean_old_loss = all_reduce_sum(old_loss) / world
    assert abs(mean_old_loss.item() - ref_loss.item()) > 1e-3
    gap = max(
        (ours - theirs).abs().max().item()
        for ours, theirs in zip(_grads(old_model), _grads(reference), strict=True)
    )
    assert gap > 1e-3


def _worker(rank: int, world: int, init_file: str, name: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        assert world_size() == world
        _check_one_case(rank, name, [6, 6], seed=0)
        _check_one_case(rank, name, [3, 8], seed=1)
        _check_one_case(rank, name, [2, 5], seed=2)
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()
    # passed: leave without C++ static destructors, where gloo's threads can abort the process
    # ("terminate called without an active exception") after the test is done
    os._exit(0)


@pytest.mark.slow
def test_ntxent_on_two_gloo_ranks_matches_single_process(tmp_path: Path) -> None:
    world = 2
    args = (world, str(tmp_path / "rendezvous"), "ntxent")
    mp.spawn(_worker, args=args, nprocs=world, join=True)


@pytest.mark.slow
def test_barlow_on_two_gloo_ranks_matches_single_process(tmp_path: Path) -> None:
    world = 2
    args = (world, str(tmp_path / "rendezvous"), "barlow")
    mp.spawn(_worker, args=args, nprocs=world, join=True)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_without_process_group_it_is_the_plain_loss(name: str) -> None:
    make, wrap = LOSSES[name]
    x1, x2 = _views(7, seed=3)
    plain = _run(_model(3), make(), x1, x2)
    wrapped = _run(_model(3), wrap(make()), x1, x2)
    assert world_size() == 1
    for ours, theirs in zip(wrapped, plain, strict=True):
        assert torch.equal(ours, theirs)


def test_collectives_without_process_group_are_the_identity() -> None:
    x = torch.randn(3, 2)
    assert all_reduce_sum(x) is x
    gathered, start = all_gather_sum_grad(x)
    assert gathered is x and start == 0


def test_ntxent_anchor_losses_of_some_views_are_those_of_the_full_loss() -> None:
    g = torch.Generator().manual_seed(5)
    z1, z2 = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(2))
    loss = NTXentLoss(temperature=0.2)
    views = torch.cat([z1, z2])
    every = loss.anchor_losses(views, torch.arange(8))
    some = loss.anchor_losses(views, torch.tensor([6, 1]))
    torch.testing.assert_close(some, every[[6, 1]], rtol=0, atol=1e-14)
    torch.testing.assert_close(every.mean(), loss(z1, z2), rtol=0, atol=1e-14)
