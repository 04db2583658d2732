"""Image -> vector functions shared by evaluation, the embed job and the search service.

An embedder maps a list of uint8 images ((H, W) or (H, W, 3), any size) to an (N, D) float32
array of L2-normalised vectors. Two kinds:

* ``pixels``: the raw-pixel baseline (:mod:`echoseek.baseline`);
* a model artifact (any :class:`~echoseek.model_ref.ModelRef`: a directory, ``runs:/``,
  ``models:/``; an alias is pinned to its version): images are converted to the model's
  channel count (luma for RGB -> gray, repetition for gray -> RGB) and go through the same
  deterministic evaluation transform as validation during training
  (:func:`echoseek.data.augment.eval_transform`, batched on the model's device), then the
  model, under autocast on GPU (bf16 where supported, else fp16).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from echoseek.baseline import pixel_embed
from echoseek.data.augment import eval_frames
from echoseek.data.frames import to_chw
from echoseek.model_ref import ModelRef
from echoseek.models.artifact import eval_augment, load_model
from echoseek.models.precision import amp_dtype, autocast

if TYPE_CHECKING:
    from echoseek.models.artifact import ModelMeta
    from echoseek.models.head import EmbeddingModel


class Embedder(Protocol):
    """Anything that embeds a batch of uint8 images into (N, dim) float32 unit vectors."""

    dim: int
    uri: str

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


class PixelEmbedder:
    """The raw-pixel baseline as an :class:`Embedder`."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.dim = size * size
        self.uri = "pixels"

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return pixel_embed(images, self.size)


class ModelEmbedder:
    """A saved embedding model as an :class:`Embedder` (eval mode, no gradients).

    ``uri`` is a model directory or MLflow URI to load, or only a name for the record when
    ``loaded`` (a model and its :class:`~echoseek.models.artifact.ModelMeta`) is given. The
    input transform is the model artifact's own (:func:`~echoseek.models.artifact.eval_augment`)
    and the precision the training rule's (:func:`echoseek.models.precision.amp_dtype`).
    """

    def __init__(
        self, uri: str, device: str | None = None, amp: bool = True, loaded: Any = None
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model: EmbeddingModel
        self.meta: ModelMeta
        self.model, self.meta = loaded or load_model(uri, device=self.device)
        self.model.to(self.device).eval()
        self.uri = uri
        self.dim = self.meta.embedding_dim
        self.channels = self.meta.in_channels
        self.augment = eval_augment(self.meta)
        self.dtype = amp_dtype(self.device, amp)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, C, S, S) float32 model input (on the model's device) for uint8 images of any
        size: images of one size are transformed together."""
        frames = [torch.from_numpy(to_chw(image, self.channels)) for image in images]
        return eval_frames(frames, self.augment, self.device)  # NxCxSxS

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.forward(self.preprocess(images))

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """(N, D) unit vectors of a :meth:`preprocess` ed batch."""
        x = batch.to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            z = self.model(x)  # NxD
        z = torch.nn.functional.normalize(z.float(), dim=1)
        return z.cpu().numpy()


def build_embedder(
    spec: str,
    pixel_size: int = 32,
    device: str | None = None,
    amp: bool = True,
    tracking: str = "",
) -> Embedder:
    """``"pixels"`` -> :class:`PixelEmbedder`; anything else is a model path or an MLflow URI
    (fetched from the store ``tracking`` into a temporary directory that is removed as soon as
    the model is loaded). ``models:/NAME@ALIAS`` is pinned to the version it names now, and
    the embedder's ``uri`` is that version's URI."""
    if spec == "pixels":
        return PixelEmbedder(pixel_size)
    ref = ModelRef.parse(spec)
    if not ref.in_mlflow:
        return ModelEmbedder(spec, device=device, amp=amp)
    ref = ref.pinned(tracking)  # an alias is recorded as its version
    with tempfile.TemporaryDirectory(prefix="echoseek-model-") as tmp:
        loaded = load_model(ref.local_dir(tracking, tmp))
    return ModelEmbedder(ref.uri, device=device, amp=amp, loaded=loaded)
