"""ResNet backbones: shapes, stems, pooling and local weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from echoseek.errors import ConfigError, InputError
from echoseek.models import GeM, build_backbone


def images(n: int, channels: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("small_stem", [False, True])
def test_output_shape(channels: int, small_stem: bool) -> None:
    backbone = build_backbone("resnet18", in_channels=channels, small_stem=small_stem)
    out = backbone(images(4, channels))
    assert out.shape == (4, 512) == (4, backbone.feature_dim)
    assert backbone.conv1.in_channels == channels


def test_resnet50_feature_dim() -> None:
    backbone = build_backbone("resnet50", in_channels=1, small_stem=True)
    assert backbone.feature_dim == 2048
    assert backbone.eval()(images(2, 1, size=16)).shape == (2, 2048)


def test_small_stem_keeps_resolution() -> None:
    maps: dict[str, tuple[int, ...]] = {}
    for small in (False, True):
        backbone = build_backbone("resnet18", in_channels=1, small_stem=small)
        backbone.layer4.register_forward_hook(
            lambda _m, _i, out, small=small: maps.__setitem__(str(small), tuple(out.shape))
        )
        backbone(images(2, 1))
    assert maps["False"] == (2, 512, 1, 1)  # 32 px / 32
    assert maps["True"] == (2, 512, 4, 4)  # 32 px / 8: stride-1 3x3 conv, no max-pool
    small_backbone = build_backbone("resnet18", small_stem=True)
    assert small_backbone.conv1.kernel_size == (3, 3) and small_backbone.conv1.stride == (1, 1)
    assert isinstance(small_backbone.maxpool, nn.Identity)


def test_gem_p_is_learned() -> None:
    backbone = build_backbone("resnet18", in_channels=1, small_stem=True, pooling="gem")
    assert any(name == "pool.p" for name, _ in backbone.named_parameters())
    backbone(images(4, 1)).sum().backward()
    assert isinstance(backbone.pool, GeM)
    assert backbone.pool.p.grad is not None and backbone.pool.p.grad.abs() > 0


def test_gem_with_p_one_is_average_pooling() -> None:
    x = torch.rand(3, 5, 4, 6, generator=torch.Generator().manual_seed(0)) + 0.01
    gem = GeM(p=1.0)
    torch.testing.assert_close(gem(x), nn.AdaptiveAvgPool2d(1)(x))
    # larger p moves towards max pooling
    assert (GeM(p=50.0)(x) > gem(x)).all()


def test_channels_last_gives_same_features() -> None:
    backbone = build_backbone("resnet18", in_channels=3, small_stem=True, pooling="gem").eval()
    x = images(2, 3)
    want = backbone(x)
    backbone = backbone.to(memory_format=torch.channels_last)
    got = backbone(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_loads_torchvision_state_dict(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone("resnet18", in_channels=3, weights_path=path)
    torch.testing.assert_close(backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    gray = build_backbone("resnet18", in_channels=1, pooling="gem", weights_path=path)
    torch.testing.assert_close(gray.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True))


def test_bad_weights_raise_input_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "bad.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"bad\.pth"):
        build_backbone("resnet18", weights_path=corrupt)
    with pytest.raises(InputError, match=r"missing\.pth"):
        build_backbone("resnet18", weights_path=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save(build_backbone("resnet18", small_stem=True).state_dict(), wrong)
    with pytest.raises(InputError, match=r"wrong\.pth.*conv1\.weight"):
        build_backbone("resnet18", small_stem=False, weights_path=wrong)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "vgg16"}, "backbone"),
        ({"in_channels": 2}, "in_channels"),
        ({"pooling": "max"}, "pooling"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_backbone(**kwargs)  # type: ignore[arg-type]
