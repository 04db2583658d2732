"""Compute a batch loss against the global batch of every data-parallel rank.

A ranking loss such as FastAP gets better with more candidates per anchor. Under
DistributedDataParallel each rank holds only its local batch, so :class:`GatherLoss` all-gathers
embeddings and labels from every rank and evaluates the wrapped loss on the concatenation. The
loss itself stays unaware of distribution.

Gradient bookkeeping. Let E = [E_0; …; E_{W−1}] be the global batch (rank order) and L(E) the
loss on it. Every rank evaluates the same L, but only its own slice E_k carries autograd history
(the gathered copies of other ranks are constants), so backward on rank k yields
∂L/∂θ restricted to the path through E_k; call it g_k. The single-process gradient on the
concatenated batch is Σ_k g_k, while DDP all-reduces and *averages*: (1/W) Σ_k g_k. GatherLoss
therefore multiplies the gradient (not the value) by W, returning
``L + (W − 1)·(L − L.detach())``, whose value is exactly L and whose gradient is W·∂L. After
DDP's averaging the parameter gradient equals the single-process gradient Σ_k g_k.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from echoseek.errors import InputError

_MAX_DIMS = 8


def world_size() -> int:
    """Number of ranks in the default process group; 1 when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, in rank order.

    This rank's slice is ``x`` itself and keeps its autograd graph; other ranks' slices are
    constants. Ranks may hold different numbers of rows (rows are padded to the largest count
    for the collective and trimmed afterwards); the number of dims, the trailing dims and the
    dtype must agree. Every rank must call this collectively, with ``x`` on the process group's
    device. With no process group, or a single rank, returns ``x``.
    """
    world = world_size()
    if world == 1:
        return x
    shapes = _gather_shapes(x, world)
    if any(shape[1:] != shapes[0][1:] for shape in shapes):
        raise InputError(f"all_gather_with_grad: ranks hold tensors of shapes {shapes}")
    most = max(shape[0] for shape in shapes)
    padded = x.detach().new_zeros((most, *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    slots = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(slots, padded)
    parts = [slot[: shape[0]] for slot, shape in zip(slots, shapes, strict=True)]
    parts[dist.get_rank()] = x
    return torch.cat(parts)


class GatherLoss(nn.Module):
    """Wrap a ``(embeddings, labels) -> scalar`` loss to use the global batch of every rank.

    With a process group of W > 1 ranks: gathers embeddings and labels
    (:func:`all_gather_with_grad`), computes ``loss(E, labels)`` on the concatenation and scales
    the gradient by W so that DDP's gradient averaging reproduces the single-process gradient
    (derivation in the module docstring). Otherwise it simply calls the loss.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        world = world_size()
        if world == 1:
            return self.loss(embeddings, labels)
        value = self.loss(all_gather_with_grad(embeddings), all_gather_with_grad(labels))
        return value + (world - 1) * (value - value.detach())


def _gather_shapes(x: Tensor, world: int) -> list[tuple[int, ...]]:
    """Every rank's shape, sent as a fixed-length vector [ndim, *shape, 0, …]."""
    if not 1 <= x.ndim <= _MAX_DIMS:
        raise InputError(f"all_gather_with_grad: expected 1 to {_MAX_DIMS} dims, got {x.ndim}")
    local = torch.zeros(_MAX_DIMS + 1, dtype=torch.long, device=x.device)
    local[0] = x.ndim
    local[1 : 1 + x.ndim] = torch.tensor(x.shape, dtype=torch.long)
    slots = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(slots, local)
    rows = [slot.tolist() for slot in slots]
    return [tuple(row[1 : 1 + row[0]]) for row in rows]
