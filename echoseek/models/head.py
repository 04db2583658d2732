"""The embedding head and the model that maps an image to its retrieval embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from echoseek.models.backbones import ResNetBackbone
from echoseek.models.mlp import linear_bn_relu


class EmbeddingHead(nn.Module):
    """Small MLP ``Linear-BN-ReLU-Linear`` to a ``dim``-d embedding, L2-normalised.

    ``e = W2 ReLU(BN(W1 h)) / ‖W2 ReLU(BN(W1 h))‖``; with ``hidden=None`` a single linear
    projection ``e = W h / ‖W h‖``. Unit length makes squared Euclidean distance
    ``2 - 2 cos`` (bounded in [0, 4], as FastAP's histogram needs).
    """

    def __init__(self, in_dim: int, dim: int = 128, hidden: int | None = 512) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.dim = dim
        self.hidden = hidden
        layers = [*linear_bn_relu(in_dim, hidden), nn.Linear(hidden, dim)] if hidden else []
        self.mlp = nn.Sequential(*layers) if layers else nn.Linear(in_dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: NxF features -> NxD unit-length embeddings."""
        return F.normalize(self.mlp(h), dim=1)  # NxD


class EmbeddingModel(nn.Module):
    """Backbone followed by an embedding head: images NxCxHxW -> unit embeddings NxD.

    Without a head the embedding is the L2-normalised backbone feature (D = F), which is how
    a pretrained encoder is used before fine-tuning.
    """

    def __init__(self, backbone: ResNetBackbone, head: EmbeddingHead | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def embedding_dim(self) -> int:
        return self.head.dim if self.head is not None else self.backbone.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: NxCxHxW -> NxD."""
        h = self.backbone(x)  # NxF
        if self.head is None:
            return F.normalize(h, dim=1)
        out: torch.Tensor = self.head(h)  # NxD
        return out
