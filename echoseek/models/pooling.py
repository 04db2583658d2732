"""Global pooling layers that turn a NxCxHxW feature map into NxC descriptors."""

from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent (Radenović et al., TPAMI 2019, Eq. 2).

    ``f_k = ( 1/|X_k| Σ_{x ∈ X_k} x^p )^{1/p}`` per channel ``k``: ``p = 1`` is average pooling,
    ``p → ∞`` approaches max pooling. Inputs are clamped to ``eps`` so the power is defined
    (the layer follows a ReLU). ``p`` starts at 3, the paper's initial value.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: NxCxHxW -> NxCx1x1."""
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}"
