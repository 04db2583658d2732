"""The per-image augmentation echoseek ran before issue 26, kept as the benchmarks' baseline.

torchvision v2 transforms applied image by image (each with its own parameters) in a Ray Data
task: the path that fed an H200 96 img/s. ``bench/bench_gpu_feed.py`` measures it side by side
with the batched on-device augmentation of :mod:`echoseek.data.augment`, and the reference
test of the batched ops (``tests/data/test_augment.py``) compares samples against it. Not part
of the package: nothing in ``echoseek/`` imports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from echoseek.data.augment import AugmentConfig, _check_probability, _checked, _positive_range
from echoseek.errors import ConfigError, InputError


class SpeckleNoise(v2.Transform):
    """Multiplicative speckle noise: x' = clamp(x · n, 0, 1), applied with probability p.

    n ~ Gamma(shape L, rate L) with L = 1/σ²: E[n] = 1 (mean brightness kept) and std(n) = σ.
    The gamma law is the intensity statistics of fully developed speckle averaged over L looks
    (Goodman, "Statistical properties of laser speckle patterns", 1975). One noise field is
    shared by all channels of an image. Expects float images in [0, 1].
    """

    _transformed_types = (tv_tensors.Image, lambda x: type(x) is torch.Tensor)

    def __init__(self, p: float = 0.5, sigma: float = 0.2) -> None:
        super().__init__()
        _check_probability("p", p)
        if sigma < 0:
            raise ConfigError(f"sigma: must be >= 0, got {sigma}")
        self.p = p
        self.sigma = sigma

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"apply": bool(torch.rand(()) < self.p) and self.sigma > 0}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"]:
            return inpt
        x = _float_image(inpt, "SpeckleNoise")
        looks = torch.tensor(1.0 / self.sigma**2, dtype=x.dtype, device=x.device)
        noise = torch.distributions.Gamma(looks, looks).sample((*x.shape[:-3], 1, *x.shape[-2:]))
        return _like(inpt, (x * noise).clamp_(0.0, 1.0))  # ...xCxHxW * ...x1xHxW


class RandomGamma(v2.Transform):
    """Random gamma curve x' = x^γ on [0, 1], applied with probability p.

    γ is log-uniform in ``gamma_range`` so that brightening (γ < 1) and darkening (γ > 1) by
    the same factor are equally likely. Maps [0, 1] onto [0, 1], keeps 0 and 1 fixed and the
    order of intensities. Expects float images in [0, 1].
    """

    _transformed_types = (tv_tensors.Image, lambda x: type(x) is torch.Tensor)

    def __init__(self, p: float = 0.3, gamma_range: Sequence[float] = (0.7, 1.5)) -> None:
        super().__init__()
        _check_probability("p", p)
        self.p = p
        self.gamma_range = _positive_range("gamma_range", gamma_range)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        low, high = (math.log(g) for g in self.gamma_range)
        gamma = math.exp(low + (high - low) * float(torch.rand(())))
        return {"apply": bool(torch.rand(()) < self.p), "gamma": gamma}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["apply"]:
            return inpt
        x = _float_image(inpt, "RandomGamma")
        return _like(inpt, x.clamp(0.0, 1.0).pow(params["gamma"]))


class ImageTransform(nn.Module):
    """Runs an image pipeline on (C, H, W) or (N, C, H, W) tensors after checking channels.

    With ``per_image`` a batch is transformed image by image (independent random parameters);
    otherwise the whole batch goes through the pipeline at once (deterministic pipelines).
    """

    def __init__(self, pipeline: nn.Module, in_channels: int, per_image: bool) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.in_channels = in_channels
        self.per_image = per_image

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _checked(images, self.in_channels)
        if images.ndim == 4 and self.per_image:
            return torch.stack([self.pipeline(image) for image in images])  # NxCxSxS
        return self.pipeline(images)  # [N]xCxSxS


class TwoViews(nn.Module):
    """Two independently augmented views of the same images, for Siamese pretraining."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(images), self.transform(images)


def build_transform(cfg: AugmentConfig) -> ImageTransform:
    """The training augmentation: geometry on uint8, then photometric changes in float32.

    Order: rotation (±rotation_deg) and shift (up to ±translate_x of the width, ±translate_y
    of the height), black fill like the background of a sector scan; random resized crop to
    size x size (scale in [crop_scale_min, 1]; 1 keeps the whole square frame, so the axial
    position of the anatomy survives, which respiratory-phase retrieval needs), flips,
    scale to [0, 1],
    brightness/contrast jitter, gamma, speckle, Gaussian blur (kernel ≈ size/10, odd, σ in
    blur_sigma), normalisation. Steps whose strength or probability is 0 are left out.
    """
    steps: list[nn.Module] = []
    if cfg.translate_x > 0 or cfg.translate_y > 0:
        shift = (cfg.translate_x, cfg.translate_y)
        steps.append(v2.RandomAffine(cfg.rotation_deg, translate=shift))
    elif cfg.rotation_deg > 0:
        steps.append(v2.RandomRotation(cfg.rotation_deg))
    steps.append(v2.RandomResizedCrop(cfg.size, scale=(cfg.crop_scale_min, 1.0), antialias=True))
    if cfg.hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(cfg.hflip_prob))
    if cfg.vflip_prob > 0:
        steps.append(v2.RandomVerticalFlip(cfg.vflip_prob))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if cfg.brightness > 0 or cfg.contrast > 0:
        steps.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
    if cfg.gamma_prob > 0:
        steps.append(RandomGamma(cfg.gamma_prob, cfg.gamma_range))
    if cfg.speckle_prob > 0 and cfg.speckle_sigma > 0:
        steps.append(SpeckleNoise(cfg.speckle_prob, cfg.speckle_sigma))
    if cfg.blur_prob > 0:
        blur = v2.GaussianBlur(2 * (cfg.size // 20) + 1, sigma=cfg.blur_sigma)
        steps.append(v2.RandomApply([blur], p=cfg.blur_prob))
    steps.append(v2.Normalize(cfg.mean, cfg.std))
    return ImageTransform(v2.Compose(steps), cfg.in_channels, per_image=True)


def _float_image(inpt: torch.Tensor, who: str) -> torch.Tensor:
    if not inpt.is_floating_point():
        raise InputError(f"{who}: expects a float image in [0, 1], got {inpt.dtype}")
    return inpt.as_subclass(torch.Tensor)


def _like(inpt: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Re-wrap ``out`` as the tv_tensor type of ``inpt`` (plain tensors stay plain)."""
    return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out
