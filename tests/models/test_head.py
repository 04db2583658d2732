"""EmbeddingHead and EmbeddingModel."""

from __future__ import annotations

import pytest
import torch

from echoseek.models import EmbeddingHead, EmbeddingModel, build_backbone


@pytest.mark.parametrize("hidden", [512, None])
def test_head_outputs_unit_vectors(hidden: int | None) -> None:
    head = EmbeddingHead(in_dim=32, dim=8, hidden=hidden)
    out = head(torch.randn(5, 32, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (5, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_embedding_model_with_and_without_head() -> None:
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    backbone = build_backbone("resnet18", in_channels=1, small_stem=True)
    model = EmbeddingModel(backbone, EmbeddingHead(backbone.feature_dim, dim=16))
    out = model(x)
    assert out.shape == (4, 16) and model.embedding_dim == 16
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    out.sum().backward()
    assert backbone.conv1.weight.grad is not None
    bare = EmbeddingModel(backbone).eval()
    assert bare.embedding_dim == 512
    feats = backbone(x)
    torch.testing.assert_close(bare(x), feats / feats.norm(dim=1, keepdim=True))
