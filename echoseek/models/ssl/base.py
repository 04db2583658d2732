"""The interface shared by the self-supervised methods (SimSiam, BYOL, Barlow Twins, ...).

A method is an ``nn.Module`` that owns a backbone and whatever heads its loss needs:

- ``forward(x1, x2, index=None) -> loss``: the scalar loss of a batch of two augmented views
  (NxCxHxW each). ``index`` holds the dataset row of each sample; only methods with
  ``needs_index = True`` (instance discrimination's memory bank) use it, the others ignore it.
- ``embed(x) -> NxF``: backbone features for retrieval (no projector, no normalisation).
- ``on_step_end()``: called once after each optimizer step (BYOL's EMA target update, the
  memory-bank update). Under DDP call it on ``ddp_model.module``.
"""

from __future__ import annotations

import torch
from torch import nn

from echoseek.models.backbones import ResNetBackbone


class SSLMethod(nn.Module):
    """Base of the SSL methods: holds ``backbone`` and the default ``embed``/``on_step_end``."""

    needs_index: bool = False

    def __init__(self, backbone: ResNetBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: NxCxHxW -> NxF backbone features."""
        features: torch.Tensor = self.backbone(x)
        return features

    def on_step_end(self) -> None:
        """Hook run after each optimizer step; most methods have nothing to do."""
