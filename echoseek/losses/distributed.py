"""Compute a batch loss against the global batch of every data-parallel rank.

A ranking loss such as FastAP gets better with more candidates per anchor, a contrastive loss
with more negatives, a correlation with more samples. Under DistributedDataParallel each rank
holds only its local batch, so the wrappers here bring in the other ranks' rows:
:class:`GatherLoss` all-gathers embeddings and labels and evaluates the wrapped loss on the
concatenation; :class:`GlobalNTXentLoss` scores this rank's views against every rank's views;
:class:`GlobalBarlowTwinsLoss` sums the batch statistics over ranks. The losses themselves stay
unaware of distribution.

Gradient bookkeeping. Let E = [E_0; …; E_{W−1}] be the global batch (rank order) and L(E) the
loss on it. Every rank evaluates the same L, but only its own slice E_k carries autograd history
(the gathered copies of other ranks are constants), so backward on rank k yields
∂L/∂θ restricted to the path through E_k; call it g_k. The single-process gradient on the
concatenated batch is Σ_k g_k, while DDP all-reduces and *averages*: (1/W) Σ_k g_k. GatherLoss
therefore multiplies the gradient (not the value) by W, returning
``L + (W − 1)·(L − L.detach())``, whose value is exactly L and whose gradient is W·∂L. After
DDP's averaging the parameter gradient equals the single-process gradient Σ_k g_k.

The SSL wrappers reach the same W·∂L by another road. Their collectives are differentiable:
:func:`all_reduce_sum` and :func:`all_gather_sum_grad` send back to each rank the *sum over
ranks* of the gradients of what they produced (the adjoint of a result every rank receives).
Every rank computes the same global value L, so the ranks together compute Σ_r L = W·L, and the
gradient reaching rank k's embeddings E_k is ∂(W·L)/∂E_k = W·∂L/∂E_k, including the paths
through other ranks' computations (E_k as another rank's negative or in its statistics). DDP's
1/W average then leaves ∂L/∂θ, the single-process gradient on the concatenated batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from echoseek.errors import InputError
from echoseek.losses.barlow import BarlowTwinsLoss, cross_correlation
from echoseek.losses.ntxent import NTXentLoss

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
    parts = _all_gather_parts(x.detach(), _checked_shapes(x, world))
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def all_gather_sum_grad(x: Tensor) -> tuple[Tensor, int]:
    """Concatenate ``x`` from every rank along dim 0 (rank order); also return where this
    rank's rows start in the result.

    Backward sums the gradient of the whole gathered tensor over ranks and keeps this rank's
    rows, so a row gets the gradients of every rank's use of it (the adjoint of an all-gather
    whose result every rank uses: vissl's, solo-learn's and lightly's ``GatherLayer``). Use it
    where other ranks compute with this rank's rows (as negatives); :func:`all_gather_with_grad`
    treats them as constants there. Same shape rules and collective call as
    :func:`all_gather_with_grad`.
    With no process group, or a single rank, returns ``(x, 0)``.
    """
    world = world_size()
    if world == 1:
        return x, 0
    shapes = _checked_shapes(x, world)
    start = sum(shape[0] for shape in shapes[: dist.get_rank()])
    gathered: Tensor = _AllGatherSumGrad.apply(x, shapes, start)
    return gathered, start


def all_reduce_sum(x: Tensor) -> Tensor:
    """``Σ_ranks x``, differentiable: backward also sums the incoming gradients over ranks.

    Every rank must call this collectively with the same shape. With no process group, or a
    single rank, returns ``x``.
    """
    if world_size() == 1:
        return x
    total: Tensor = _AllReduceSum.apply(x)
    return total


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


class GlobalNTXentLoss(nn.Module):
    """Wrap :class:`~echoseek.losses.NTXentLoss` to use the global batch of every rank.

    The 2N views of the global batch are stacked ``[Z1; Z2]`` with ``Z1`` (and ``Z2``) the
    rank-ordered concatenation of every rank's ``z1`` (``z2``), so rank k's n pairs sit at rows
    ``start_k + i`` and ``N + start_k + i``. Each rank scores its own 2n views as anchors against
    all 2N views (:meth:`~echoseek.losses.NTXentLoss.anchor_losses`), which costs 2n×2N
    similarities rather than 2N×2N, and returns the global mean::

        L = (1 / 2N) Σ_ranks Σ_{i ∈ rank's anchors} ℓ(i)

    the single-process loss on the concatenated batch, on every rank. The gathers and the sum
    are differentiable (:func:`all_gather_sum_grad`, :func:`all_reduce_sum`), so each rank's
    embeddings get W·∂L, which DDP's averaging turns into ∂L (module docstring). Ranks may
    hold different n. Otherwise (one rank, no process group) it simply calls the loss.
    """

    def __init__(self, loss: NTXentLoss) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """z1, z2: nxD projections of this rank's two views; returns the global scalar loss."""
        if world_size() == 1:
            return self.loss(z1, z2)
        pairs, start = all_gather_sum_grad(torch.cat([z1, z2], dim=1))  # Nx2D
        g1, g2 = pairs.split(z1.shape[1], dim=1)  # NxD each
        total = g1.shape[0]
        rows = torch.arange(start, start + z1.shape[0], device=z1.device)  # n
        anchors = torch.cat([rows, total + rows])  # 2n: this rank's views in [Z1; Z2]
        local = self.loss.anchor_losses(torch.cat([g1, g2]), anchors).sum()
        return all_reduce_sum(local) / (2 * total)


class GlobalBarlowTwinsLoss(nn.Module):
    """Wrap :class:`~echoseek.losses.BarlowTwinsLoss` to use the global batch of every rank.

    The centring means, the per-unit norms and the cross-correlation ``C`` are sums over the
    batch's rows; each is summed over ranks (:func:`all_reduce_sum` as the ``sum_ranks`` of
    :func:`~echoseek.losses.barlow.cross_correlation`), so ``C`` and ``L`` are those of the
    concatenated batch, on every rank. As the sums are differentiable, each rank's embeddings
    get W·∂L, which DDP's averaging turns into ∂L (module docstring). Ranks may hold different
    batch sizes. Otherwise (one rank, no process group) it simply calls the loss.

    The projector's BatchNorm layers are not the loss's: they normalise with the local batch
    unless the model is converted to ``SyncBatchNorm``.
    """

    def __init__(self, loss: BarlowTwinsLoss) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """z1, z2: nxD embeddings of this rank's two views; returns the global scalar loss."""
        if world_size() == 1:
            return self.loss(z1, z2)
        c = cross_correlation(z1, z2, self.loss.eps, sum_ranks=all_reduce_sum)  # DxD
        return self.loss.objective(c)


class _AllGatherSumGrad(torch.autograd.Function):
    """Forward: every rank's rows, concatenated; backward: Σ_ranks gradient, this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, shapes: list[tuple[int, ...]], start: int) -> Tensor:
        ctx.rows = slice(start, start + x.shape[0])
        return torch.cat(_all_gather_parts(x.detach(), shapes))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total[ctx.rows], None, None


class _AllReduceSum(torch.autograd.Function):
    """Forward and backward: the sum over ranks."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        total = x.detach().contiguous().clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total


def _all_gather_parts(x: Tensor, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Every rank's ``x`` (no autograd history), gathered through rows padded to the largest."""
    most = max(shape[0] for shape in shapes)
    padded = x.new_zeros((most, *x.shape[1:]))
    padded[: x.shape[0]] = x
    slots = [torch.empty_like(padded) for _ in range(len(shapes))]
    dist.all_gather(slots, padded)
    return [slot[: shape[0]] for slot, shape in zip(slots, shapes, strict=True)]


def _checked_shapes(x: Tensor, world: int) -> list[tuple[int, ...]]:
    """Every rank's shape of ``x``; ranks must agree on all but the first dim."""
    shapes = _gather_shapes(x, world)
    if any(shape[1:] != shapes[0][1:] for shape in shapes):
        raise InputError(f"all-gather: ranks hold tensors of shapes {shapes}")
    return shapes


def _gather_shapes(x: Tensor, world: int) -> list[tuple[int, ...]]:
    """Every rank's shape, sent as a fixed-length vector [ndim, *shape, 0, …]."""
    if not 1 <= x.ndim <= _MAX_DIMS:
        raise InputError(f"all-gather: expected 1 to {_MAX_DIMS} dims, got {x.ndim}")
    local = torch.zeros(_MAX_DIMS + 1, dtype=torch.long, device=x.device)
    local[0] = x.ndim
    local[1 : 1 + x.ndim] = torch.tensor(x.shape, dtype=torch.long)
    slots = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(slots, local)
    rows = [slot.tolist() for slot in slots]
    return [tuple(row[1 : 1 + row[0]]) for row in rows]
