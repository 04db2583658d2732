"""Image augmentations for self-supervised pretraining, tuned for grayscale ultrasound.

:func:`build_transform` follows the SimSiam recipe (Chen & He, CVPR 2021, §A: random resized
crop, flips, brightness/contrast jitter, Gaussian blur) and adds two ultrasound-specific
transforms: :class:`SpeckleNoise` (multiplicative gamma-distributed speckle) and
:class:`RandomGamma` (display gamma / gain curve). Colour saturation, hue and grayscale
conversion are left out: B-mode images carry no colour.

Inputs are uint8 tensors (C, H, W) or batches (N, C, H, W) (float tensors in [0, 1] are
accepted too); outputs are float32, resized to ``size`` x ``size`` and normalised with
``mean``/``std``. In a batch every image gets its own random parameters.

Randomness comes from torch's global generator, as in torchvision: ``torch.manual_seed(s)``
before a call reproduces its output, and a ``DataLoader`` seeds each worker from its
``generator`` argument (``torch.Generator().manual_seed(s)``), which makes an epoch of
augmentations reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from echoseek.errors import ConfigError, InputError

# Respiratory-phase retrieval (the phantom, breath-hold cines): no crop or vertical shift (the
# axial position of the anatomy is the signal), lateral shift and a small rotation (hand
# jitter), brightness/contrast kept. Overrides of AugmentConfig's defaults; the ``augment``
# block of ray_jobs/*.phase.yaml spells the same values (tests/test_configs.py checks it).
PHASE_RETRIEVAL = {
    "crop_scale_min": 1.0,
    "translate_x": 0.06,
    "rotation_deg": 3.0,
    "hflip_prob": 0.0,
    "blur_prob": 0.0,
    "speckle_prob": 0.0,
    "gamma_prob": 0.0,
}


@dataclass
class AugmentConfig:
    """Augmentation hyperparameters (the fields a sweep searches); validated on construction.

    Probabilities are in [0, 1]; ``blur_sigma`` and ``gamma_range`` are (low, high) pairs;
    ``mean``/``std`` hold one value per input channel or a single value for all channels.
    """

    size: int = 64
    crop_scale_min: float = 0.2
    brightness: float = 0.4
    contrast: float = 0.4
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    hflip_prob: float = 0.5
    vflip_prob: float = 0.0
    rotation_deg: float = 10.0
    translate_x: float = 0.0  # max lateral shift, fraction of the width (hand jitter)
    translate_y: float = 0.0  # max axial shift, fraction of the height
    speckle_prob: float = 0.5
    speckle_sigma: float = 0.2
    gamma_prob: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    in_channels: int = 1
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ConfigError(f"size: must be >= 8 pixels, got {self.size}")
        if not 0 < self.crop_scale_min <= 1:
            raise ConfigError(f"crop_scale_min: must be in (0, 1], got {self.crop_scale_min}")
        for name in ("brightness", "contrast", "speckle_sigma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.rotation_deg <= 180:
            raise ConfigError(f"rotation_deg: must be in [0, 180], got {self.rotation_deg}")
        for name in ("translate_x", "translate_y"):
            if not 0 <= getattr(self, name) <= 0.5:
                raise ConfigError(f"{name}: must be in [0, 0.5], got {getattr(self, name)}")
        for name in ("blur_prob", "hflip_prob", "vflip_prob", "speckle_prob", "gamma_prob"):
            _check_probability(name, getattr(self, name))
        self.blur_sigma = _positive_range("blur_sigma", self.blur_sigma)
        self.gamma_range = _positive_range("gamma_range", self.gamma_range)
        if self.in_channels < 1:
            raise ConfigError(f"in_channels: must be >= 1, got {self.in_channels}")
        self.mean = _per_channel("mean", self.mean, self.in_channels)
        self.std = _per_channel("std", self.std, self.in_channels)
        if min(self.std) <= 0:
            raise ConfigError(f"std: every value must be > 0, got {self.std}")


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
        _check_images(images, self.in_channels)
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


def eval_transform(cfg: AugmentConfig) -> ImageTransform:
    """The deterministic evaluation transform: resize to size x size, scale, normalise.

    The whole frame is resized (aspect ratio not kept) so that nothing of the field of view is
    cropped away at search time.
    """
    steps = [
        v2.Resize((cfg.size, cfg.size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(cfg.mean, cfg.std),
    ]
    return ImageTransform(v2.Compose(steps), cfg.in_channels, per_image=False)


def _check_images(images: Any, in_channels: int) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images: expected a (C, H, W) or (N, C, H, W) tensor, got {shape}")
    if images.shape[-3] != in_channels:
        raise InputError(
            f"in_channels: images have {images.shape[-3]} channels, config expects {in_channels}"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise InputError(f"images: expected uint8 or float values, got {images.dtype}")


def _float_image(inpt: torch.Tensor, who: str) -> torch.Tensor:
    if not inpt.is_floating_point():
        raise InputError(f"{who}: expects a float image in [0, 1], got {inpt.dtype}")
    return inpt.as_subclass(torch.Tensor)


def _like(inpt: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Re-wrap ``out`` as the tv_tensor type of ``inpt`` (plain tensors stay plain)."""
    return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def _check_probability(name: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"{name}: must be a probability in [0, 1], got {value}")


def _positive_range(name: str, value: Sequence[float]) -> tuple[float, float]:
    pair = tuple(value)
    if len(pair) != 2 or not 0 < pair[0] <= pair[1]:
        raise ConfigError(f"{name}: expected (low, high) with 0 < low <= high, got {value}")
    return float(pair[0]), float(pair[1])


def _per_channel(name: str, value: Sequence[float], channels: int) -> list[float]:
    values = [float(v) for v in value]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ConfigError(f"{name}: expected 1 or in_channels={channels} values, got {len(values)}")
    return values
