"""Tests for the augmentation pipeline and its ultrasound-specific transforms."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torchvision import tv_tensors

from echoseek.config import from_dict
from echoseek.data.augment import (
    AugmentConfig,
    RandomGamma,
    SpeckleNoise,
    TwoViews,
    build_transform,
    eval_transform,
)
from echoseek.errors import ConfigError, InputError


def frames(n: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Smooth uint8 test frames (N, C, 72, 90): gradients plus a bright blob, not square."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 72), torch.linspace(0, 1, 90), indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=g)
    blob = torch.exp(-((yy - centre[:, :1]) ** 2 + (xx - centre[:, 1:]) ** 2) / 0.02)
    image = 0.4 * yy + 0.6 * blob  # Nx1x72x90
    return (image.expand(n, channels, 72, 90) * 255).round().to(torch.uint8)


def test_train_transform_shapes_and_dtype() -> None:
    cfg = AugmentConfig(size=32)
    transform = build_transform(cfg)
    single = transform(frames(1)[0])
    batch = transform(frames(5))
    assert single.shape == (1, 32, 32) and single.dtype == torch.float32
    assert batch.shape == (5, 1, 32, 32) and batch.dtype == torch.float32
    assert torch.isfinite(batch).all()


def test_three_channel_config_and_per_channel_normalisation() -> None:
    cfg = AugmentConfig(size=16, in_channels=3, mean=[0.4, 0.5, 0.6], std=[0.2])
    assert cfg.std == [0.2, 0.2, 0.2]
    out = build_transform(cfg)(frames(2, channels=3))
    assert out.shape == (2, 3, 16, 16)


def test_two_views_differ_and_images_in_a_batch_get_their_own_parameters() -> None:
    torch.manual_seed(0)
    views = TwoViews(build_transform(AugmentConfig(size=32)))
    same_twice = frames(1).expand(4, 1, 72, 90).contiguous()
    first, second = views(same_twice)
    assert first.shape == second.shape == (4, 1, 32, 32)
    assert not torch.allclose(first, second)
    assert not torch.allclose(first[0], first[1])


def test_manual_seed_reproduces_augmentations() -> None:
    transform = build_transform(AugmentConfig(size=32, speckle_prob=1.0, gamma_prob=1.0))
    images = frames(3)
    torch.manual_seed(123)
    a = transform(images)
    torch.manual_seed(123)
    b = transform(images)
    torch.manual_seed(124)
    c = transform(images)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_eval_transform_is_deterministic_resize_and_normalise() -> None:
    cfg = AugmentConfig(size=24, mean=[0.25], std=[0.5])
    transform = eval_transform(cfg)
    images = frames(3)
    out = transform(images)
    assert out.shape == (3, 1, 24, 24) and out.dtype == torch.float32
    assert torch.equal(out, transform(images))
    assert torch.equal(out[1], transform(images[1]))
    flat = torch.full((1, 50, 70), 153, dtype=torch.uint8)
    expected = (153 / 255 - 0.25) / 0.5
    torch.testing.assert_close(transform(flat), torch.full((1, 24, 24), expected))


def test_float_input_in_unit_range_matches_uint8_input() -> None:
    transform = eval_transform(AugmentConfig(size=24))
    images = frames(2)
    torch.testing.assert_close(
        transform(images.float() / 255), transform(images), atol=1e-2, rtol=0
    )


def test_speckle_keeps_mean_and_has_the_requested_spread() -> None:
    torch.manual_seed(1)
    image = torch.full((1, 256, 256), 0.4)
    noisy = SpeckleNoise(p=1.0, sigma=0.2)(image)
    assert noisy.mean().item() == pytest.approx(0.4, rel=0.02)  # E[n] = 1
    assert (noisy / image).std().item() == pytest.approx(0.2, rel=0.05)
    assert noisy.min() >= 0 and noisy.max() <= 1


def test_speckle_shares_one_field_across_channels_and_skips_masks() -> None:
    torch.manual_seed(2)
    image = tv_tensors.Image(torch.full((3, 32, 32), 0.5))
    mask = tv_tensors.Mask(torch.ones(32, 32, dtype=torch.uint8))
    noisy, kept = SpeckleNoise(p=1.0, sigma=0.3)(image, mask)
    assert isinstance(noisy, tv_tensors.Image)
    torch.testing.assert_close(noisy[0], noisy[2])
    assert not torch.equal(noisy, image)
    assert torch.equal(kept, mask)


def test_speckle_probability_zero_and_sigma_zero_are_identity() -> None:
    image = torch.rand(1, 16, 16)
    assert torch.equal(SpeckleNoise(p=0.0, sigma=0.5)(image), image)
    assert torch.equal(SpeckleNoise(p=1.0, sigma=0.0)(image), image)


def test_random_gamma_maps_unit_interval_onto_itself() -> None:
    torch.manual_seed(3)
    ramp = torch.linspace(0, 1, 101).reshape(1, 1, 101)
    transform = RandomGamma(p=1.0, gamma_range=(0.5, 2.0))
    for _ in range(20):
        out = transform(ramp)
        assert out[..., 0] == 0 and out[..., -1] == 1
        assert out.min() >= 0 and out.max() <= 1
        assert (out.diff(dim=-1) >= 0).all()  # monotone
        mid = out[..., 50].item()
        assert 0.5**2.0 - 1e-6 <= mid <= 0.5**0.5 + 1e-6
    assert torch.equal(RandomGamma(p=0.0)(ramp), ramp)


def test_photometric_transforms_reject_uint8() -> None:
    with pytest.raises(InputError, match="RandomGamma: expects a float image"):
        RandomGamma(p=1.0)(torch.zeros(1, 4, 4, dtype=torch.uint8))


def test_wrong_channels_and_shapes_raise_input_errors() -> None:
    transform = build_transform(AugmentConfig(size=16))
    with pytest.raises(InputError, match="in_channels: images have 3 channels"):
        transform(frames(2, channels=3))
    with pytest.raises(InputError, match="images: expected a"):
        transform(torch.zeros(16, 16, dtype=torch.uint8))
    with pytest.raises(InputError, match="images: expected uint8 or float"):
        transform(torch.zeros(1, 16, 16, dtype=torch.int32))


def test_lateral_shift_moves_columns_and_keeps_rows() -> None:
    """translate_x with no crop: the axial position (rows) of the anatomy survives."""
    image = torch.zeros(1, 64, 64, dtype=torch.uint8)
    image[:, 20:24, :] = 200  # a horizontal band, like the diaphragm
    image[:, 36:, 30:34] = 100  # a vertical band below it, to see the shift
    cfg = AugmentConfig(
        size=64, crop_scale_min=1.0, rotation_deg=0.0, translate_x=0.1, hflip_prob=0.0,
        brightness=0.0, contrast=0.0, blur_prob=0.0, speckle_prob=0.0, gamma_prob=0.0,
        mean=[0.0], std=[1.0],
    )  # fmt: skip
    torch.manual_seed(0)
    transform = build_transform(cfg)
    columns = set()
    for _ in range(10):
        out = transform(image)[0]
        assert out[21, 10:54].min() > 0.7 and out[10].max() < 0.5  # band rows unchanged
        columns.add(int(out[50].argmax()))
    assert len(columns) > 3 and max(columns) - min(columns) <= 2 * 7 + 4  # shifted <= 10 %


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 4),
        ("crop_scale_min", 0.0),
        ("crop_scale_min", 1.5),
        ("brightness", -0.1),
        ("contrast", -1.0),
        ("blur_prob", 1.5),
        ("hflip_prob", -0.1),
        ("vflip_prob", 2.0),
        ("speckle_prob", 1.01),
        ("gamma_prob", -1.0),
        ("blur_sigma", (2.0, 0.1)),
        ("blur_sigma", (0.0, 1.0)),
        ("blur_sigma", (0.1, 0.2, 0.3)),
        ("gamma_range", (1.5, 0.7)),
        ("rotation_deg", 181.0),
        ("translate_x", -0.1),
        ("translate_y", 0.6),
        ("speckle_sigma", -0.2),
        ("in_channels", 0),
        ("mean", [0.5, 0.5]),
        ("std", [0.0]),
    ],
)
def test_bad_config_fields_raise_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        AugmentConfig(**{field: value})


def test_config_loads_from_yaml_style_mapping() -> None:
    cfg = from_dict(AugmentConfig, {"blur_sigma": [0.2, 1.0], "gamma_range": [0.8, 1.2]})
    assert cfg.blur_sigma == (0.2, 1.0) and cfg.gamma_range == (0.8, 1.2)
    assert dataclasses.asdict(cfg)["size"] == 64
    with pytest.raises(ConfigError, match=r"^hflip_prob: "):
        from_dict(AugmentConfig, {"hflip_prob": 3})
