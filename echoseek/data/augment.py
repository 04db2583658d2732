"""Image augmentations as batched tensor ops on the training worker's device.

Ray Data hands the worker uint8 frames (N, C, H, W); everything here runs on the whole batch at
once, on the GPU when there is one and on the CPU otherwise, with per-sample random parameters.
One implementation serves the two SSL views (:meth:`Augmenter.two_views`), the fine-tune
augmentation (:meth:`Augmenter.__call__`) and the deterministic evaluation transform
(:func:`eval_transform`).

The training recipe follows SimSiam (Chen & He, CVPR 2021, §A: random resized crop, flips,
brightness/contrast jitter, Gaussian blur) plus two ultrasound transforms: multiplicative
gamma-distributed speckle and a random display gamma. Colour saturation, hue and grayscale
conversion are left out: B-mode images carry no colour. Parameters are drawn exactly as
torchvision draws them for the same transforms (:func:`draw_params`), from a seeded CPU
generator, so a seed reproduces a run's augmentations on any device; the pixel noise (speckle)
comes from a generator on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F

from echoseek.data.gamma_noise import gamma_noise
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

CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratios of the random resized crop, as torchvision
CROP_ATTEMPTS = 10  # tries at a crop that fits before the central fallback, as torchvision
LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, what torchvision's contrast takes the mean of
# pixels resampled together on a CPU, (r·size)² a frame (r: geometry's supersampling): a
# chunk's planes stay in cache between ops (two views of a batch of 256 run 1.7x faster at 224
# px, 2.2x at 64 px; bench_augment_ops)
CPU_CHUNK_PIXELS = 2**20


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

    @property
    def blur_kernel(self) -> int:
        """Odd Gaussian kernel size, about a tenth of the output side: 2 x (size // 20) + 1."""
        return 2 * (self.size // 20) + 1


@dataclass(frozen=True)
class ViewParams:
    """The random parameters of one augmented view of a batch: one row per sample (CPU)."""

    angle: torch.Tensor  # N float, degrees, counter-clockwise
    shift: torch.Tensor  # Nx2 float, whole pixels (x right, y down)
    crop: torch.Tensor  # Nx4 long: top, left, height, width in frame pixels
    hflip: torch.Tensor  # N bool
    vflip: torch.Tensor  # N bool
    brightness: torch.Tensor  # N float factor, 1 = unchanged
    contrast: torch.Tensor  # N float factor, 1 = unchanged
    contrast_first: torch.Tensor  # N bool: contrast before brightness (jitter's random order)
    gamma: torch.Tensor  # N float exponent, 1 where not applied
    speckle: torch.Tensor  # N bool
    blur_sigma: torch.Tensor  # N float, 0 where not applied

    def rows(self, select: slice) -> ViewParams:
        """The parameters of the frames ``select`` picks."""
        return ViewParams(**{f.name: getattr(self, f.name)[select] for f in fields(self)})


def draw_params(
    cfg: AugmentConfig, n: int, height: int, width: int, generator: torch.Generator
) -> ViewParams:
    """Per-sample parameters for ``n`` frames of ``height`` x ``width``, drawn as torchvision's
    transforms draw them: angle ~ U(±rotation_deg); shift = round(U(±translate · side));
    crop: area ~ U(crop_scale_min, 1) · H · W and log-aspect ~ U(log 3/4, log 4/3), the first of
    10 tries that fits, else the largest central crop of clamped aspect; flips ~ Bernoulli;
    brightness, contrast ~ U(max(0, 1 - s), 1 + s), in random order; gamma log-uniform in
    ``gamma_range`` with probability ``gamma_prob``; blur σ ~ U(blur_sigma) with ``blur_prob``.
    """

    def uniform(low: float, high: float, shape: tuple[int, ...] = (n,)) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)

    def chance(p: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) < p

    shift = torch.stack(
        [uniform(-cfg.translate_x * width, cfg.translate_x * width).round(),
         uniform(-cfg.translate_y * height, cfg.translate_y * height).round()], dim=1,
    )  # fmt: skip
    low, high = (math.log(g) for g in cfg.gamma_range)
    return ViewParams(
        angle=uniform(-cfg.rotation_deg, cfg.rotation_deg).float(),
        shift=shift.float(),
        crop=_crop_boxes(cfg.crop_scale_min, n, height, width, generator),
        hflip=chance(cfg.hflip_prob),
        vflip=chance(cfg.vflip_prob),
        brightness=uniform(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness).float(),
        contrast=uniform(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast).float(),
        contrast_first=chance(0.5),
        gamma=torch.where(chance(cfg.gamma_prob), uniform(low, high).exp(), 1.0).float(),
        speckle=chance(cfg.speckle_prob) & (cfg.speckle_sigma > 0),
        blur_sigma=torch.where(chance(cfg.blur_prob), uniform(*cfg.blur_sigma), 0.0).float(),
    )


def _crop_boxes(
    scale_min: float, n: int, height: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """Nx4 (top, left, h, w) random resized crops, torchvision's rule vectorised over tries."""
    shape = (n, CROP_ATTEMPTS)
    area = height * width * (scale_min + (1 - scale_min) * torch.rand(shape, generator=generator))
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(shape, generator=generator))
    w = torch.sqrt(area * aspect).round().long()
    h = torch.sqrt(area / aspect).round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(fits.any(1), fits.long().argmax(1), -1)  # the first try that fits
    pick = first.clamp(min=0).unsqueeze(1)
    h, w = h.gather(1, pick).squeeze(1), w.gather(1, pick).squeeze(1)
    top = (torch.rand(n, generator=generator) * (height - h + 1)).long()
    left = (torch.rand(n, generator=generator) * (width - w + 1)).long()
    ch, cw = _central_crop(height, width)
    missed = first < 0
    h, w = torch.where(missed, ch, h), torch.where(missed, cw, w)
    top = torch.where(missed, (height - ch) // 2, top)
    left = torch.where(missed, (width - cw) // 2, left)
    return torch.stack([top, left, h, w], dim=1)


def _central_crop(height: int, width: int) -> tuple[int, int]:
    """torchvision's fallback: the whole frame with its aspect clamped into CROP_RATIO."""
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        return round(width / CROP_RATIO[0]), width
    if ratio > CROP_RATIO[1]:
        return height, round(height * CROP_RATIO[1])
    return height, width


class Augmenter:
    """The training augmentation of one worker: uint8 NxCxHxW on ``device`` -> float NxCxSxS.

    Order: rotation (±rotation_deg) and shift about the frame centre, black fill like the
    background of a sector scan; random resized crop to size x size (scale in
    [crop_scale_min, 1]; 1 keeps the whole frame, so the axial position of the anatomy
    survives, which respiratory-phase retrieval needs); flips; brightness/contrast jitter;
    gamma; speckle; Gaussian blur; normalisation. ``seed`` fixes every draw;
    ``channels_last`` returns the views in that memory format (what a GPU model wants).
    """

    def __init__(
        self,
        cfg: AugmentConfig,
        device: torch.device | str = "cpu",
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        self.cfg = cfg
        self.channels_last = channels_last
        self.device = torch.device(device)
        self.params_generator = torch.Generator().manual_seed(seed)
        self.noise_generator = torch.Generator(self.device).manual_seed(seed + 1)

    def draw(self, images: torch.Tensor) -> ViewParams:
        """Fresh parameters for every frame of ``images``."""
        n, _, height, width = images.shape
        return draw_params(self.cfg, n, height, width, self.params_generator)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """One augmented view of every frame (its own random parameters each)."""
        return self.apply(images, self.draw(_checked(images, self.cfg.in_channels)))

    def two_views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented views of the same frames, for Siamese pretraining."""
        return self(images), self(images)

    def apply(self, images: torch.Tensor, p: ViewParams) -> torch.Tensor:
        """The view of ``images`` (uint8 or float in [0, 1]) that parameters ``p`` describe.
        On a CPU the batch goes through in chunks of about :data:`CPU_CHUNK_PIXELS` resampled
        pixels (each frame's parameters stay its own); a GPU takes the whole batch at once."""
        images = _checked(images, self.cfg.in_channels)
        side = supersampling(p.crop, self.cfg.size) * self.cfg.size
        n, most = len(images), max(1, CPU_CHUNK_PIXELS // side**2)
        if images.device.type != "cpu" or n <= most:
            x = self._view(images, p)
        else:
            chunk = math.ceil(n / math.ceil(n / most))  # chunks of even size: 64 -> 4 x 16
            starts = range(0, n, chunk)
            x = torch.cat([self._view(images[i : i + chunk], p.rows(slice(i, i + chunk)))
                           for i in starts])  # fmt: skip
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _view(self, images: torch.Tensor, p: ViewParams) -> torch.Tensor:
        """The ops of :meth:`apply`, in order, on one batch."""
        cfg = self.cfg
        x = _unit_float(images)  # NxCxHxW in [0, 1]
        x = geometry(x, p, cfg.size)  # NxCxSxS
        if cfg.brightness > 0 or cfg.contrast > 0:
            x = jitter(x, p.brightness, p.contrast, p.contrast_first)
        x = gamma_curve(x, p.gamma)
        x = speckle(x, p.speckle, cfg.speckle_sigma, self.noise_generator)
        x = blur(x, p.blur_sigma, cfg.blur_kernel)
        return normalise(x, cfg.mean, cfg.std)


def geometry(x: torch.Tensor, p: ViewParams, size: int) -> torch.Tensor:
    """Rotation and shift, random resized crop and flips of every frame in one resampling.

    Per frame (H x W, crop box top, left, h, w; angle θ, shift t; flips) an output pixel at
    normalised coordinates n (grid_sample's, pixel centres, ``align_corners=False``) is
    flipped (n -> -n along a flipped axis), placed in the crop box of the rotated frame,
    q = (left, top) + (n + 1)/2 · (w, h), and read from the input at u = M(q - c - t), c the
    frame centre and M = [[cos θ, -sin θ], [sin θ, cos θ]] in image axes (y down: θ > 0 turns
    the picture counter-clockwise, torchvision's ``rotate`` sense). In normalised input
    coordinates that is the affine map D⁻¹ M (C n + q₀ - c - t), D = diag(W/2, H/2),
    C = diag(±w/2, ±h/2), q₀ the box centre: bilinear, zeros outside the frame.

    Bilinear sampling reads every input pixel while the step is at most 2 (at a step of 2 it is
    the 2 x 2 mean), so a box up to twice the output side is read once per output pixel; a
    larger one at r = ceil(largest box side / 2·size) samples per output pixel along each axis,
    averaged (r x r mean pool), as ``roi_align``'s adaptive sampling does: no aliasing.
    """
    _, _, height, width = x.shape
    dev = x.device
    theta = torch.deg2rad(p.angle.to(dev))
    cos, sin = torch.cos(theta), torch.sin(theta)
    top, left, h, w = p.crop.to(dev, torch.float32).unbind(1)
    cx = torch.where(p.hflip.to(dev), -w, w) / 2  # C = diag(cx, cy)
    cy = torch.where(p.vflip.to(dev), -h, h) / 2
    shift = p.shift.to(dev)
    ox = left + w / 2 - width / 2 - shift[:, 0]  # q0 - c - t
    oy = top + h / 2 - height / 2 - shift[:, 1]
    dx, dy = width / 2, height / 2
    affine = torch.stack(
        [torch.stack([cos * cx / dx, -sin * cy / dx, (cos * ox - sin * oy) / dx], 1),
         torch.stack([sin * cx / dy, cos * cy / dy, (sin * ox + cos * oy) / dy], 1)], 1,
    )  # fmt: skip  # Nx2x3
    r = supersampling(p.crop, size)
    out = F.grid_sample(x, affine_grid(affine, r * size), mode="bilinear", padding_mode="zeros",
                        align_corners=False)  # fmt: skip
    return F.avg_pool2d(out, r) if r > 1 else out  # NxCxSxS


def supersampling(crop: torch.Tensor, size: int) -> int:
    """r = ceil(largest crop side / 2·size), at least 1: the samples per output pixel along
    each axis that :func:`geometry` takes for crops ``crop`` (Nx4: top, left, h, w)."""
    return max(1, math.ceil(float(crop[:, 2:].max()) / (2 * size)))


def affine_grid(affine: torch.Tensor, side: int) -> torch.Tensor:
    """``F.affine_grid`` for a side x side output (Nxside x side x2), as broadcast
    multiply-adds: grid point (y, x) = A[:, :, 0]·x + A[:, :, 1]·y + A[:, :, 2] at pixel
    centres. CPU torch builds ``F.affine_grid`` with a batched matmul of inner size 3, and a
    broadcast add whose innermost axis is the pair (x, y) does not vectorise; each coordinate
    here is one row + column add of side-long rows, written into its slot of the grid."""
    steps = (torch.arange(side, device=affine.device, dtype=affine.dtype) * 2 + 1) / side - 1
    grid = torch.empty(len(affine), side, side, 2, device=affine.device, dtype=affine.dtype)
    for axis in range(2):  # input x, then input y
        a = affine[:, axis].view(-1, 3, 1, 1)
        along_x = steps.view(1, 1, -1) * a[:, 0]  # Nx1xside
        along_y = torch.addcmul(a[:, 2], steps.view(1, -1, 1), a[:, 1])  # Nxsidex1
        torch.add(along_x, along_y, out=grid[..., axis])
    return grid


def on_frames(
    x: torch.Tensor, flagged: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``x`` with ``fn(frames, rows)`` in place of the frames ``flagged`` (a CPU mask; ``rows``
    their CPU indices, for per-frame parameters); ``x`` itself when none is flagged. The mask
    stays on the CPU, so choosing the frames never waits for the device."""
    rows = flagged.nonzero().squeeze(1)
    if not len(rows):
        return x
    on_device = rows.to(x.device)
    return x.index_copy(0, on_device, fn(x.index_select(0, on_device), rows))


def jitter(
    x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, contrast_first: torch.Tensor
) -> torch.Tensor:
    """Brightness x' = clamp(b·x, 0, 1) and contrast x' = clamp(c·x + (1 - c)·mean, 0, 1)
    (mean: of the frame's luma), in each frame's own order: the frames flagged in
    ``contrast_first`` (a CPU mask) get contrast then brightness, the others the reverse."""

    def bright(frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return frames.mul_(brightness[rows].to(x.device).view(-1, 1, 1, 1)).clamp_(0.0, 1.0)

    def contrast_of(frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return _contrast(frames, contrast[rows].to(x.device))

    x = on_frames(x, contrast_first, lambda f, rows: bright(contrast_of(f, rows), rows))
    return on_frames(x, ~contrast_first, lambda f, rows: contrast_of(bright(f, rows), rows))


def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """clamp(mean + c·(x - mean), 0, 1) per frame (``torch.lerp`` from the mean to x)."""
    gray = x if x.shape[1] == 1 else (x[:, :3] * x.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1)
    mean = gray.mean(dim=(-3, -2, -1) if gray.ndim == 4 else (-2, -1)).view(-1, 1, 1, 1)
    return torch.lerp(mean.expand_as(x), x, factor.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def gamma_curve(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """x' = clamp(x, 0, 1)^γ per frame (γ = 1: untouched): keeps 0 and 1 and the order of
    intensities; γ < 1 brightens, γ > 1 darkens."""

    def curve(frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return frames.clamp_(0.0, 1.0).pow_(gamma[rows].to(x.device).view(-1, 1, 1, 1))

    return on_frames(x, gamma != 1, curve)


def speckle(
    x: torch.Tensor, apply: torch.Tensor, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """Multiplicative speckle on the frames flagged in ``apply``: x' = clamp(x · n, 0, 1).

    n ~ Gamma(shape L, rate L) with L = 1/σ²: E[n] = 1 (mean brightness kept) and std(n) = σ.
    The gamma law is the intensity statistics of fully developed speckle averaged over L looks
    (Goodman, "Statistical properties of laser speckle patterns", 1975). One noise field is
    shared by all channels of a frame; :func:`gamma_noise` draws it.
    """
    looks = 1.0 / sigma**2

    def noisy(frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        shape = (len(rows), 1, *x.shape[-2:])
        noise = gamma_noise(shape, looks, generator, x.device).div_(looks)
        return frames.mul_(noise).clamp_(0.0, 1.0)

    return on_frames(x, apply, noisy)


def blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """:func:`gaussian_blur` of the frames with σ > 0 (``sigma``: a CPU tensor). On a GPU the
    whole batch is convolved (frames with σ = 0 by a unit impulse), so the convolution has one
    shape every step and cudnn's autotuner picks its kernel once; on a CPU, where the cost is
    the arithmetic, only the flagged frames are (a run's blur_prob of them)."""
    flagged = sigma > 0
    if not bool(flagged.any()):
        return x
    if x.device.type != "cpu":
        return gaussian_blur(x, sigma.to(x.device), kernel)
    return on_frames(x, flagged, lambda frames, rows: gaussian_blur(frames, sigma[rows], kernel))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur, each frame with its own σ (0: untouched), reflect padding.

    Kernel weights w_i ∝ exp(-i² / 2σ²) for i in [-(k-1)/2, (k-1)/2], normalised to sum 1, as
    torchvision's ``gaussian_blur``; σ = 0 gives the unit impulse. The batch is one grouped
    convolution (a group per frame and channel), the same shape every step of a run.
    """
    n, c, height, width = x.shape
    half = kernel // 2
    steps = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp(min=1e-6).view(-1, 1)  # 1e-6: a unit impulse in float32
    weights = torch.exp(-0.5 * (steps / s) ** 2)
    weights = weights / weights.sum(1, keepdim=True)
    # taps below 1e-12 (far tails of a small σ) would be float32 subnormals, which make the
    # convolution several times slower on a CPU; they change no output by a representable step
    weights = torch.where(weights < 1e-12, 0.0, weights).repeat_interleave(c, 0)  # (N*C)xk
    flat = F.pad(x.reshape(1, n * c, height, width), (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, weights.view(n * c, 1, 1, kernel), groups=n * c)  # along x
    flat = F.conv2d(flat, weights.view(n * c, 1, kernel, 1), groups=n * c)  # along y
    return flat.view(n, c, height, width)


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel."""
    m = x.new_tensor(list(mean)).view(1, -1, 1, 1)
    s = x.new_tensor(list(std)).view(1, -1, 1, 1)
    return (x - m).div_(s)


def eval_transform(images: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """The deterministic evaluation transform of a batch: resize to size x size (bilinear,
    antialiased), scale to [0, 1], normalise. The whole frame is resized (aspect ratio not
    kept) so that nothing of the field of view is cropped away at search time. Accepts
    (C, H, W) or (N, C, H, W), uint8 or float in [0, 1], on any device."""
    x = _unit_float(_checked(images, cfg.in_channels))
    single = x.ndim == 3
    x = x.unsqueeze(0) if single else x
    if tuple(x.shape[-2:]) != (cfg.size, cfg.size):
        x = F.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear", antialias=True,
                          align_corners=False).clamp(0.0, 1.0)  # fmt: skip
    x = normalise(x, cfg.mean, cfg.std)
    return x[0] if single else x


def eval_frames(
    frames: Sequence[torch.Tensor], cfg: AugmentConfig, device: torch.device | None = None
) -> torch.Tensor:
    """:func:`eval_transform` of CxHxW frames of any sizes, as one NxCxSxS batch on ``device``
    (default: the frames'): frames of one size are stacked, moved and transformed together,
    in the order given."""
    out: list[torch.Tensor | None] = [None] * len(frames)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):
        by_shape.setdefault(tuple(frame.shape), []).append(i)
    for rows in by_shape.values():
        stacked = torch.stack([frames[i] for i in rows])
        batch = eval_transform(stacked if device is None else stacked.to(device), cfg)
        for i, image in zip(rows, batch, strict=True):
            out[i] = image
    return torch.stack([t for t in out if t is not None])


def _checked(images: object, in_channels: int) -> torch.Tensor:
    """``images`` if it is a (C, H, W) or (N, C, H, W) uint8/float tensor of ``in_channels``."""
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images: expected a (C, H, W) or (N, C, H, W) tensor, got {shape}")
    if images.shape[-3] != in_channels:
        raise InputError(
            f"in_channels: images have {images.shape[-3]} channels, config expects {in_channels}"
        )
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise InputError(f"images: expected uint8 or float values, got {images.dtype}")
    return images


def _unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 / 255; float images pass as float32 (taken to be in [0, 1])."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


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
