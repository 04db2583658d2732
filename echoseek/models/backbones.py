"""ResNet backbones that map images to (N, feature_dim) descriptors.

:func:`build_backbone` wraps torchvision's ResNet-18/50 (random init unless a local state dict is
given) with the three changes retrieval on small grayscale images needs: a 1-channel first
convolution, a small-image stem (3x3 stride-1 conv, no max-pool, as in the SimCLR/SimSiam CIFAR
variants) for inputs of 64 px or less, and average or GeM pooling.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from echoseek.errors import ConfigError, InputError
from echoseek.models.pooling import GeM
from echoseek.models.state_dict import read_state_dict, state_dict_mismatch

if TYPE_CHECKING:
    from torchvision.models import ResNet

#: backbone name -> feature dimension of its last stage.
BACKBONES: dict[str, int] = {"resnet18": 512, "resnet50": 2048}
POOLINGS = ("avg", "gem")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier: images NxCxHxW -> features NxF.

    Submodule names match torchvision's (``conv1``, ``bn1``, ``layer1`` ...), so a torchvision
    state dict loads after dropping ``fc.*``. ``feature_dim`` is F (512 or 2048).
    """

    conv1: nn.Conv2d
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, resnet: ResNet, feature_dim: int, pool: nn.Module) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.pool = pool
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: NxCxHxW (contiguous or channels_last) -> NxF."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # Nx64xH/4xW/4 (HxW small stem)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # NxFxhxw
        x = self.pool(x)  # NxFx1x1
        return torch.flatten(x, 1)  # NxF


def build_backbone(
    name: str = "resnet18",
    in_channels: int = 3,
    small_stem: bool = False,
    pooling: str = "avg",
    weights_path: str | Path | None = None,
) -> ResNetBackbone:
    """Build a ResNet backbone returning (N, feature_dim) features.

    Args:
        name: ``"resnet18"`` or ``"resnet50"``.
        in_channels: 1 (grayscale, e.g. ultrasound) or 3.
        small_stem: replace the 7x7/2 conv and max-pool by a 3x3/1 conv (inputs <= 64 px).
        pooling: ``"avg"`` or ``"gem"`` (learnable-p generalised mean).
        weights_path: optional local state dict (torchvision or echoseek keys) loaded with
            ``torch.load(weights_only=True)``. 3-channel conv1 weights are summed over the
            input channels for a 1-channel model (grayscale = equal RGB).
    """
    if name not in BACKBONES:
        raise ConfigError(f"backbone: unknown '{name}' (known: {', '.join(BACKBONES)})")
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels: must be 1 or 3, got {in_channels}")
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling: must be one of {list(POOLINGS)}, got '{pooling}'")
    resnet = _torchvision_resnet(name)
    if small_stem:
        resnet.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        resnet.maxpool = nn.Identity()
    elif in_channels != 3:
        resnet.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    pool: nn.Module = GeM() if pooling == "gem" else nn.AdaptiveAvgPool2d(1)
    backbone = ResNetBackbone(resnet, BACKBONES[name], pool)
    if weights_path is not None:
        load_backbone_weights(backbone, weights_path)
    return backbone


def load_backbone_weights(backbone: ResNetBackbone, path: str | Path) -> None:
    """Load a local state dict into ``backbone`` (never unpickles arbitrary objects).

    Torchvision classifier keys (``fc.*``) are dropped; GeM's ``pool.p`` may be absent.
    """
    path = Path(path)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    state = _adapt_conv1(state, backbone.conv1.weight)
    problem = state_dict_mismatch(state, backbone.state_dict(), optional=frozenset({"pool.p"}))
    if problem:
        raise InputError(f"{path}: state dict does not fit backbone: {problem}")
    backbone.load_state_dict(state, strict=False)


def _torchvision_resnet(name: str) -> ResNet:
    from torchvision import models  # imported on use: torchvision is slow to import

    model: ResNet = getattr(models, name)(weights=None)
    return model


def _adapt_conv1(state: dict[str, torch.Tensor], conv1: torch.Tensor) -> dict[str, torch.Tensor]:
    weight = state.get("conv1.weight")
    if weight is not None and weight.shape[1] == 3 and conv1.shape[1] == 1:
        state = {**state, "conv1.weight": weight.sum(dim=1, keepdim=True)}
    return state
