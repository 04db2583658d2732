"""A memory bank of one L2-normalised vector per training instance (Wu et al., CVPR 2018, §3.2).

Rows are updated with the features computed for the same instances at the current step,
``v_i <- normalize(μ v_i + (1 - μ) f_i)`` (μ = 0.5 in the paper). Under DDP every rank sees
different samples, so :func:`gather_across_ranks` collects the indices and features of every
rank first and all ranks apply the same update: their banks stay identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from echoseek.losses.distributed import all_gather_with_grad


class MemoryBank(nn.Module):
    """``n x d`` bank of unit vectors in a registered buffer, initialised uniformly on the sphere.

    Initialisation uses its own seeded generator, so every rank (and every rerun) starts from the
    same bank without any communication.
    """

    vectors: torch.Tensor

    def __init__(self, size: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"memory bank needs size >= 1 and dim >= 1, got {size}x{dim}")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("vectors", F.normalize(torch.randn(size, dim, generator=generator)))

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` row indices drawn uniformly with replacement (the noise distribution 1/n).

        Drawn on the CPU (``generator``, if given, must be a CPU generator), then moved to the
        bank's device.
        """
        drawn = torch.randint(self.size, (count,), generator=generator)
        return drawn.to(self.vectors.device)

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor, momentum: float = 0.5) -> None:
        """``v_i <- normalize(μ v_i + (1 - μ) f_i)`` for the rows in ``index`` (K) given KxD.

        A row that appears several times is updated once, with its first occurrence, so the
        result does not depend on scatter order (identical on every rank and device).
        """
        index, features = first_occurrences(index, features.detach().to(self.vectors.dtype))
        mixed = momentum * self.vectors[index] + (1.0 - momentum) * features  # KxD
        self.vectors.index_copy_(0, index, F.normalize(mixed, dim=1))


def first_occurrences(
    index: torch.Tensor, features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the first row of ``features`` for each distinct value of ``index``."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(index.numel(), device=index.device)
    first = torch.full_like(unique, index.numel()).scatter_reduce(
        0, inverse, positions, reduce="amin"
    )
    return unique, features[first]


def gather_across_ranks(
    index: torch.Tensor, features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ranks' ``index`` (K) and ``features`` (KxD), concatenated in rank order, detached.

    Ranks may hold different K (the last batch). Returns the inputs (features detached) when
    ``torch.distributed`` is not initialised or has a single rank. Every rank must call it.
    """
    return all_gather_with_grad(index), all_gather_with_grad(features.detach())
