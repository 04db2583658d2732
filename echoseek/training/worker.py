"""Inside a Ray Train worker: its rank and device, threads, DDP preparation, seeds, epoch hooks."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from echoseek.data.augment import AugmentConfig, Augmenter
from echoseek.training.options import ScaleOptions

EpochHook = Callable[[int, int, int], None]  # (epoch, rank, world_size) -> None


def worker_context(seed: int) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)`` of this Train worker; seeds torch with ``seed + rank``."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(seed + rank)
    return rank, world, ray.train.torch.get_device()


def worker_threads(requested: int, node_cpus: int, local_workers: int) -> int:
    """Intra-op threads of a worker: ``requested``, or the node's CPUs shared by its workers.

    Ray sets ``OMP_NUM_THREADS`` from a worker's reserved CPUs, i.e. 1 for the fractional
    reservations a laptop needs, which would leave most cores idle during the step.
    """
    return requested if requested > 0 else max(1, node_cpus // max(1, local_workers))


def decode_threads(device: torch.device, node_cpus: int, local_workers: int) -> int:
    """Threads that read and decode a fine-tuning worker's batches: with a GPU, the node's CPUs
    shared by its workers (with one thread the H200 fine-tune ran 450 img/s at 224 px, its GPU
    waiting 96 % of the time); on a CPU, one: the step needs the cores."""
    return max(1, node_cpus // max(1, local_workers)) if device.type == "cuda" else 1


def prepare(model: nn.Module, scale: ScaleOptions, world_size: int) -> nn.Module:
    """Threads, SyncBN (optional), device + DDP (``prepare_model``), cudnn autotuning and
    channels_last on a GPU, compile (optional)."""
    import ray.train
    import ray.train.torch

    local = ray.train.get_context().get_local_world_size()
    torch.set_num_threads(worker_threads(scale.torch_threads, os.cpu_count() or 1, local))
    if scale.sync_bn and world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
    if device.type == "cuda" and scale.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model = ray.train.torch.prepare_model(model)
    if scale.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


def augment_seed(seed: int, rank: int, start_epoch: int) -> int:
    """The seed of a worker's augmentations: one stream per (run seed, rank, start epoch), so
    ranks differ and a resumed run does not replay the augmentations of its first epochs."""
    return int(np.random.SeedSequence([seed, rank, start_epoch]).generate_state(1)[0])


def worker_augmenter(
    augment: AugmentConfig, scale: ScaleOptions, device: torch.device, seed: int, rank: int,
    start_epoch: int,
) -> Augmenter:  # fmt: skip
    """This worker's augmentation on its device: seeded by :func:`augment_seed`, views in
    channels_last on a GPU when the model is (``scale.channels_last``)."""
    channels_last = device.type == "cuda" and scale.channels_last
    return Augmenter(augment, device, augment_seed(seed, rank, start_epoch), channels_last)


def run_hooks(hooks: Sequence[EpochHook], epoch: int, rank: int, world: int) -> None:
    """Call every epoch hook the caller passed (through the loop config) for this epoch."""
    for hook in hooks:
        hook(epoch, rank, world)
