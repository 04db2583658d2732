"""GatherLoss: with DDP over 2 gloo ranks, loss and gradients equal the single-process ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from echoseek.losses.distributed import GatherLoss, all_gather_with_grad, world_size
from echoseek.losses.fastap import FastAPLoss

IN_DIM, OUT_DIM = 6, 5


def _global_batch(total: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(total, IN_DIM, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (total,), generator=gen)
    return inputs, labels


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(IN_DIM, OUT_DIM).double()


def _embed(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(model(inputs), dim=1)  # NxOUT_DIM


def _check_one_case(rank: int, sizes: list[int], seed: int, distance: str) -> None:
    inputs, labels = _global_batch(sum(sizes), seed)
    # Single-process reference on the concatenated batch.
    reference = _model(seed)
    ref_emb = _embed(reference, inputs)
    ref_emb.retain_grad()
    ref_loss = FastAPLoss(distance=distance)(ref_emb, labels)
    ref_loss.backward()
    # This rank's share, through DDP (which averages parameter gradients over ranks).
    start = sum(sizes[:rank])
    local = slice(start, start + sizes[rank])
    model = _model(seed)
    ddp = DistributedDataParallel(model)
    emb = _embed(ddp, inputs[local])
    emb.retain_grad()
    torch.testing.assert_close(all_gather_with_grad(emb).detach(), ref_emb.detach())
    loss = GatherLoss(FastAPLoss(distance=distance))(emb, labels[local])
    loss.backward()

    torch.testing.assert_close(loss.detach(), ref_loss.detach(), rtol=0, atol=1e-12)
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-9, atol=1e-12)
    # Local embedding gradients are W × the single-process ones; DDP's 1/W averaging undoes it.
    assert emb.grad is not None and ref_emb.grad is not None
    torch.testing.assert_close(emb.grad / len(sizes), ref_emb.grad[local], rtol=1e-9, atol=1e-12)


def _worker(rank: int, world: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        assert world_size() == world
        _check_one_case(rank, [7, 7], seed=0, distance="sqeuclidean")
        _check_one_case(rank, [4, 11], seed=1, distance="sqeuclidean")
        _check_one_case(rank, [9, 3], seed=2, distance="soart3_gamma")
    finally:
        dist.destroy_process_group()
    # passed: leave without C++ static destructors, where gloo's threads can abort the process
    # ("terminate called without an active exception") after the test is done
    os._exit(0)


@pytest.mark.slow
def test_two_gloo_ranks_match_single_process(tmp_path: Path) -> None:
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "rendezvous")), nprocs=world, join=True)


def test_without_process_group_it_is_the_plain_loss() -> None:
    inputs, labels = _global_batch(12, seed=3)
    plain_emb = _embed(_model(3), inputs)
    wrapped_emb = plain_emb.detach().clone().requires_grad_()
    plain_emb = plain_emb.detach().clone().requires_grad_()
    assert world_size() == 1
    assert all_gather_with_grad(plain_emb) is plain_emb
    plain = FastAPLoss()(plain_emb, labels)
    wrapped = GatherLoss(FastAPLoss())(wrapped_emb, labels)
    plain.backward()
    wrapped.backward()
    assert wrapped.item() == plain.item()
    assert wrapped_emb.grad is not None and plain_emb.grad is not None
    assert torch.equal(wrapped_emb.grad, plain_emb.grad)


def test_wrapper_exposes_the_inner_loss_counter() -> None:
    inner = FastAPLoss()
    wrapped = GatherLoss(inner)
    wrapped(torch.eye(3), torch.arange(3))
    assert wrapped.loss is inner and inner.num_empty_batches == 1
