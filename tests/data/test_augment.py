"""Tests for the batched augmentation: parameters drawn as torchvision draws them, each op
against a per-image torchvision computation, and the ultrasound transforms' statistics."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from echoseek.config import from_dict
from echoseek.data.augment import (
    CPU_CHUNK_PIXELS,
    AugmentConfig,
    Augmenter,
    ViewParams,
    affine_grid,
    blur,
    draw_params,
    eval_frames,
    eval_transform,
    gaussian_blur,
    geometry,
    jitter,
    speckle,
    supersampling,
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


def identity(n: int, height: int, width: int) -> ViewParams:
    """Parameters that change nothing: whole-frame crop, no rotation, factors of 1."""
    zeros, no = torch.zeros(n), torch.zeros(n, dtype=torch.bool)
    return ViewParams(
        angle=zeros, shift=torch.zeros(n, 2), crop=torch.tensor([[0, 0, height, width]] * n),
        hflip=no, vflip=no, brightness=zeros + 1, contrast=zeros + 1, contrast_first=no,
        gamma=zeros + 1, speckle=no, blur_sigma=zeros,
    )  # fmt: skip


def test_views_have_the_output_shape_dtype_and_channels() -> None:
    out = Augmenter(AugmentConfig(size=32))(frames(5))
    assert out.shape == (5, 1, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    cfg = AugmentConfig(size=16, in_channels=3, mean=[0.4, 0.5, 0.6], std=[0.2])
    assert cfg.std == [0.2, 0.2, 0.2]
    assert Augmenter(cfg)(frames(2, channels=3)).shape == (2, 3, 16, 16)
    last = Augmenter(AugmentConfig(size=16), channels_last=True)(frames(2))
    assert last.is_contiguous(memory_format=torch.channels_last)


def test_two_views_differ_and_frames_in_a_batch_get_their_own_parameters() -> None:
    same = frames(1).expand(4, 1, 72, 90).contiguous()
    first, second = Augmenter(AugmentConfig(size=32)).two_views(same)
    assert first.shape == second.shape == (4, 1, 32, 32)
    assert not torch.allclose(first, second)
    assert not torch.allclose(first[0], first[1])


def test_a_seed_reproduces_the_augmentations() -> None:
    cfg = AugmentConfig(size=32, speckle_prob=1.0, gamma_prob=1.0)
    a, b, c = (Augmenter(cfg, seed=s)(frames(3)) for s in (123, 123, 124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_parameters_are_distributed_as_torchvision_draws_them() -> None:
    """Two-sample KS tests against torchvision's own ``get_params`` for the same settings."""
    n, height, width = 3000, 72, 90
    cfg = AugmentConfig(size=32, crop_scale_min=0.2, rotation_deg=10.0, translate_x=0.1,
                        brightness=0.4, contrast=0.3, blur_prob=1.0, gamma_prob=1.0)  # fmt: skip
    p = draw_params(cfg, n, height, width, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    image = torch.zeros(1, height, width)
    crops = torch.tensor(
        [T.RandomResizedCrop.get_params(image, [0.2, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    )
    affine = [T.RandomAffine.get_params([-10.0, 10.0], [0.1, 0.0], None, None, [width, height])
              for _ in range(n)]  # fmt: skip
    jitters = [T.ColorJitter.get_params([0.6, 1.4], [0.7, 1.3], None, None) for _ in range(n)]
    blur = [T.GaussianBlur.get_params(0.1, 2.0) for _ in range(n)]

    def same(ours: torch.Tensor, theirs: Any) -> None:
        result = stats.ks_2samp(np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float))
        assert result.pvalue > 1e-3, result

    for column in range(4):  # top, left, height, width
        same(p.crop[:, column], crops[:, column])
    same(p.angle, [a[0] for a in affine])
    same(p.shift[:, 0], [a[1][0] for a in affine])
    assert p.shift[:, 1].abs().max() == 0  # translate_y = 0
    same(p.brightness, [j[1] for j in jitters])
    same(p.contrast, [j[2] for j in jitters])
    # ColorJitter applies brightness before contrast in half of its random orders
    order = [list(j[0]).index(0) < list(j[0]).index(1) for j in jitters]
    assert abs(float(p.contrast_first.float().mean()) - (1 - np.mean(order))) < 0.05
    same(p.blur_sigma, blur)
    gammas = np.exp(np.random.default_rng(0).uniform(np.log(0.7), np.log(1.5), n))
    same(p.gamma, gammas)  # log-uniform in gamma_range
    assert abs(float(p.hflip.float().mean()) - 0.5) < 0.05


def test_probabilities_gate_their_transforms() -> None:
    cfg = AugmentConfig(size=32, blur_prob=0.25, gamma_prob=0.6, speckle_prob=0.0)
    p = draw_params(cfg, 4000, 40, 40, torch.Generator().manual_seed(1))
    assert abs(float((p.blur_sigma > 0).float().mean()) - 0.25) < 0.03
    assert abs(float((p.gamma != 1).float().mean()) - 0.6) < 0.03
    assert not p.speckle.any()


def test_crop_and_flip_match_torchvision_per_image() -> None:
    """Reference sample: the batched crop + flip against ``resized_crop`` and ``hflip`` of one
    frame (upscaling: one bilinear read either way; the outer pixel ring differs because
    torchvision clamps at the box edge where the batched op reads the frame beyond it)."""
    image = frames(1).float() / 255
    p = dataclasses.replace(
        identity(1, 72, 90), crop=torch.tensor([[10, 20, 30, 40]]), hflip=torch.tensor([True])
    )
    ours = geometry(image, p, 48)
    ref = TF.horizontal_flip(TF.resized_crop(image, 10, 20, 30, 40, [48, 48], antialias=True))
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_rotation_and_shift_match_torchvision_per_image() -> None:
    """Reference sample: counter-clockwise rotation about the centre and a shift, bilinear,
    against torchvision's ``affine`` of one frame (which turns clockwise for a positive angle)."""
    image = frames(1)[..., :72, :72].float() / 255
    p = dataclasses.replace(
        identity(1, 72, 72), angle=torch.tensor([7.0]), shift=torch.tensor([[3.0, -2.0]])
    )
    ours = geometry(image, p, 72)
    ref = TF.affine(image, angle=-7.0, translate=[3, -2], scale=1.0, shear=[0.0, 0.0],
                    interpolation=InterpolationMode.BILINEAR)  # fmt: skip
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", [1, 7, 24])
def test_affine_grid_matches_torch(side: int) -> None:
    affine = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(side))
    expected = torch.nn.functional.affine_grid(affine, [5, 1, side, side], align_corners=False)
    torch.testing.assert_close(affine_grid(affine, side), expected)


@pytest.mark.parametrize(("side", "size", "r"), [(128, 64, 1), (129, 64, 2), (256, 64, 2),
                                                 (257, 64, 3), (90, 224, 1)])  # fmt: skip
def test_supersampling_reads_every_pixel_of_the_largest_crop(side: int, size: int, r: int) -> None:
    """r = ceil(side / 2·size): bilinear taps at a step of at most 2 input pixels."""
    assert supersampling(torch.tensor([[0, 0, 10, 10], [0, 0, side, 20]]), size) == r


def test_downscaled_crops_are_averaged_not_aliased() -> None:
    """A box four times the output is read at 2 x 2 samples per pixel and averaged: a
    one-pixel checkerboard comes out flat grey, not a moiré of black and white."""
    board = ((torch.arange(128).view(-1, 1) + torch.arange(128)) % 2).float().view(1, 1, 128, 128)
    out = geometry(board, identity(1, 128, 128), 32)
    torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=1e-5, rtol=0)


def test_photometric_ops_match_torchvision_per_image() -> None:
    image = frames(3).float() / 255
    b, c = torch.tensor([1.3, 0.7, 1.0]), torch.tensor([0.8, 1.2, 1.25])
    first = torch.tensor([True, False, False])
    ours = jitter(image, b, c, first)
    for i in range(3):
        x = image[i]
        if first[i]:
            ref = TF.adjust_brightness(TF.adjust_contrast(x, float(c[i])), float(b[i]))
        else:
            ref = TF.adjust_contrast(TF.adjust_brightness(x, float(b[i])), float(c[i]))
        torch.testing.assert_close(ours[i], ref, atol=1e-6, rtol=0)
    sigma = torch.tensor([0.8, 0.0, 1.7])
    blurred = gaussian_blur(image, sigma, 9)
    for i in (0, 2):
        ref = TF.gaussian_blur(image[i], [9, 9], [float(sigma[i])] * 2)
        torch.testing.assert_close(blurred[i], ref, atol=1e-5, rtol=0)
    assert torch.equal(blurred[1], image[1])  # sigma 0: untouched


def test_blur_on_a_cpu_convolves_only_the_flagged_frames_as_the_whole_batch_would() -> None:
    x = frames(5).float() / 255
    sigma = torch.tensor([0.0, 1.5, 0.0, 0.3, 2.0])
    out = blur(x.clone(), sigma, 9)
    torch.testing.assert_close(out, gaussian_blur(x, sigma, 9))
    assert torch.equal(out[[0, 2]], x[[0, 2]])  # sigma 0: the very same values
    assert not torch.equal(out[1], x[1])
    assert torch.equal(blur(x, torch.zeros(5), 9), x)


def test_augmenter_is_its_ops_in_order() -> None:
    """apply(): geometry, flips, jitter, gamma, blur, normalise, as the per-op references."""
    cfg = AugmentConfig(size=32, speckle_prob=0.0, mean=[0.25], std=[0.5])
    augmenter = Augmenter(cfg)
    images = frames(4)
    p = augmenter.draw(images)
    x = geometry(images.float() / 255, p, 32)
    x = jitter(x, p.brightness, p.contrast, p.contrast_first).pow(p.gamma.view(-1, 1, 1, 1))
    x = gaussian_blur(x, p.blur_sigma, cfg.blur_kernel) if (p.blur_sigma > 0).any() else x
    torch.testing.assert_close(augmenter.apply(images, p), (x - 0.25) / 0.5)


def test_a_cpu_batch_larger_than_a_chunk_gives_each_frame_its_own_view() -> None:
    """70 frames at 224 px go through in chunks; each output is its frame's view alone."""
    assert supersampling(torch.tensor([[0, 0, 72, 90]]), 224) == 1
    assert 2 * CPU_CHUNK_PIXELS < 70 * 224 * 224
    cfg = AugmentConfig(size=224, speckle_prob=0.0)
    augmenter = Augmenter(cfg, channels_last=True)
    images = frames(70)
    p = augmenter.draw(images)
    out = augmenter.apply(images, p)
    assert out.shape == (70, 1, 224, 224)
    assert out.is_contiguous(memory_format=torch.channels_last)
    alone = torch.cat([augmenter.apply(images[i : i + 1], p.rows(slice(i, i + 1)))
                       for i in range(70)])  # fmt: skip
    torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-5)
    assert torch.equal(p.rows(slice(65, 70)).angle, p.angle[65:])


def test_eval_transform_is_deterministic_resize_and_normalise() -> None:
    cfg = AugmentConfig(size=24, mean=[0.25], std=[0.5])
    images = frames(3)
    out = eval_transform(images, cfg)
    assert out.shape == (3, 1, 24, 24) and out.dtype == torch.float32
    assert torch.equal(out, eval_transform(images, cfg))
    torch.testing.assert_close(out[1], eval_transform(images[1], cfg))
    ref = TF.resize(images.float() / 255, [24, 24], antialias=True)
    torch.testing.assert_close(out, (ref - 0.25) / 0.5, atol=1e-5, rtol=0)
    flat = torch.full((1, 50, 70), 153, dtype=torch.uint8)
    expected = (153 / 255 - 0.25) / 0.5
    torch.testing.assert_close(eval_transform(flat, cfg), torch.full((1, 24, 24), expected))


def test_eval_frames_takes_mixed_sizes_in_order() -> None:
    cfg = AugmentConfig(size=16)
    mixed = [frames(1)[0], frames(1, seed=1)[0, :, :40, :50], frames(1, seed=2)[0]]
    out = eval_frames(mixed, cfg)
    assert out.shape == (3, 1, 16, 16)
    for i, frame in enumerate(mixed):
        torch.testing.assert_close(out[i], eval_transform(frame, cfg))


def test_float_input_in_unit_range_matches_uint8_input() -> None:
    cfg = AugmentConfig(size=24)
    images = frames(2)
    torch.testing.assert_close(
        eval_transform(images.float() / 255, cfg), eval_transform(images, cfg), atol=1e-6, rtol=0
    )


def test_speckle_keeps_mean_has_the_requested_spread_and_one_field_per_frame() -> None:
    image = torch.full((2, 3, 256, 256), 0.4)
    apply = torch.tensor([True, False])
    noisy = speckle(image, apply, 0.2, torch.Generator().manual_seed(1))
    assert noisy[0].mean().item() == pytest.approx(0.4, rel=0.02)  # E[n] = 1
    assert (noisy[0] / image[0]).std().item() == pytest.approx(0.2, rel=0.05)
    assert noisy.min() >= 0 and noisy.max() <= 1
    torch.testing.assert_close(noisy[0, 0], noisy[0, 2])  # one field for every channel
    assert torch.equal(noisy[1], image[1])  # not flagged: untouched


def test_gamma_maps_the_unit_interval_onto_itself() -> None:
    cfg = AugmentConfig(size=16, gamma_prob=1.0, gamma_range=(0.5, 2.0), rotation_deg=0.0,
                        crop_scale_min=1.0, hflip_prob=0.0, brightness=0.0, contrast=0.0,
                        blur_prob=0.0, speckle_prob=0.0, mean=[0.0], std=[1.0])  # fmt: skip
    ramp = torch.linspace(0, 1, 16).expand(20, 1, 16, 16).contiguous()
    out = Augmenter(cfg, seed=3)(ramp)
    assert out.min() >= 0 and out.max() <= 1
    assert (out.diff(dim=-1) >= -1e-6).all()  # monotone along the ramp
    assert torch.all(out[..., 0] < 1e-6) and torch.all(out[..., -1] > 1 - 1e-6)


def test_wrong_channels_and_shapes_raise_input_errors() -> None:
    augmenter = Augmenter(AugmentConfig(size=16))
    with pytest.raises(InputError, match="in_channels: images have 3 channels"):
        augmenter(frames(2, channels=3))
    with pytest.raises(InputError, match="images: expected a"):
        augmenter(torch.zeros(16, 16, dtype=torch.uint8))
    with pytest.raises(InputError, match="images: expected uint8 or float"):
        eval_transform(torch.zeros(1, 16, 16, dtype=torch.int32), AugmentConfig(size=16))


def test_lateral_shift_moves_columns_and_keeps_rows() -> None:
    """translate_x with no crop: the axial position (rows) of the anatomy survives."""
    image = torch.zeros(10, 1, 64, 64, dtype=torch.uint8)
    image[..., 20:24, :] = 200  # a horizontal band, like the diaphragm
    image[..., 36:, 30:34] = 100  # a vertical band below it, to see the shift
    cfg = AugmentConfig(
        size=64, crop_scale_min=1.0, rotation_deg=0.0, translate_x=0.1, hflip_prob=0.0,
        brightness=0.0, contrast=0.0, blur_prob=0.0, speckle_prob=0.0, gamma_prob=0.0,
        mean=[0.0], std=[1.0],
    )  # fmt: skip
    out = Augmenter(cfg)(image)[:, 0]
    assert out[:, 21, 10:54].min() > 0.7 and out[:, 10].max() < 0.5  # band rows unchanged
    columns = {int(c) for c in out[:, 50].argmax(1)}
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
