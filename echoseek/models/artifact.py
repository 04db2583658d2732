"""The model artifact: ``model.pt`` (plain state dict) + ``model.json`` (how to rebuild it).

A model directory holds everything needed to embed images without the training code's config::

    model.pt    torch.save(model.state_dict()), read back with torch.load(weights_only=True)
    model.json  {"format_version": 1, "backbone": "resnet18", "in_channels": 1,
                 "small_stem": true, "pooling": "gem", "head_dim": 128, "head_hidden": 512,
                 "input_size": [64, 64], "mean": [0.5], "std": [0.25],
                 "distance": "sqeuclidean", "embedding_dim": 128, "extra": {...}}

:func:`save_model` writes both files into a staging directory beside ``out_dir`` and renames
it into place (:func:`echoseek.storage.staged_dir`), so readers never see half an artifact.
:func:`load_model` rebuilds the architecture from ``model.json`` and loads the weights without
unpickling arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echoseek.config import from_dict
from echoseek.data.augment import AugmentConfig
from echoseek.errors import ConfigError, EchoseekError, InputError
from echoseek.model_ref import META_FILE, WEIGHTS_FILE, ModelRef
from echoseek.models.backbones import BACKBONES, POOLINGS, build_backbone
from echoseek.models.head import EmbeddingHead, EmbeddingModel
from echoseek.models.state_dict import read_state_dict, state_dict_mismatch
from echoseek.storage import staged_dir

FORMAT_VERSION = 1


@dataclasses.dataclass
class ModelMeta:
    """Architecture, preprocessing and training facts of a saved embedding model.

    ``head_dim=None`` means no head: the embedding is the L2-normalised backbone feature.
    ``mean``/``std`` (one value per input channel) normalise ``[0, 1]`` pixels before the model;
    ``input_size`` is (height, width). ``distance`` names the :mod:`echoseek.distances` function
    the model was trained with. ``extra`` carries provenance (method, run id, dataset sha256).
    """

    backbone: str = "resnet18"
    in_channels: int = 1
    small_stem: bool = False
    pooling: str = "avg"
    head_dim: int | None = 128
    head_hidden: int | None = 512
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    distance: str = "sqeuclidean"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(
                f"backbone: unknown '{self.backbone}' (known: {', '.join(BACKBONES)})"
            )
        if self.in_channels not in (1, 3):
            raise ConfigError(f"in_channels: must be 1 or 3, got {self.in_channels}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling: must be one of {list(POOLINGS)}, got '{self.pooling}'")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(
                f"mean/std: need one value per input channel ({self.in_channels}), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std: values must be > 0, got {list(self.std)}")
        size = tuple(self.input_size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"input_size: must be two positive sizes, got {list(size)}")
        if size[0] != size[1]:
            raise ConfigError(f"input_size: must be square (height = width), got {list(size)}")

    @property
    def embedding_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else BACKBONES[self.backbone]

    def to_json(self) -> dict[str, Any]:
        """The ``model.json`` document."""
        return {
            "format_version": FORMAT_VERSION,
            **dataclasses.asdict(self),
            "embedding_dim": self.embedding_dim,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelMeta:
        """Parse a ``model.json`` document; bad fields raise EchoseekError naming the field."""
        fields = dict(data)
        version = fields.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise InputError(f"format_version: expected {FORMAT_VERSION}, got {version!r}")
        stated_dim = fields.pop("embedding_dim", None)
        meta = from_dict(cls, fields)
        if stated_dim is not None and stated_dim != meta.embedding_dim:
            raise InputError(
                f"embedding_dim: {stated_dim} disagrees with the architecture "
                f"({meta.embedding_dim})"
            )
        return meta


def build_model(meta: ModelMeta) -> EmbeddingModel:
    """The (randomly initialised) architecture ``meta`` describes."""
    backbone = build_backbone(meta.backbone, meta.in_channels, meta.small_stem, meta.pooling)
    head = None
    if meta.head_dim is not None:
        head = EmbeddingHead(backbone.feature_dim, meta.head_dim, meta.head_hidden)
    return EmbeddingModel(backbone, head)


def save_model(
    model: nn.Module, out_dir: str | Path, meta: ModelMeta, overwrite: bool = False
) -> Path:
    """Write ``model.pt`` + ``model.json`` to ``out_dir`` atomically; returns ``out_dir``.

    ``model`` must have the state dict of ``build_model(meta)`` (checked before writing). A
    non-empty ``out_dir`` is replaced only with ``overwrite=True``, once the new one is complete.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    problem = state_dict_mismatch(state, build_model(meta).state_dict())
    if problem:
        raise ConfigError(f"model does not match its ModelMeta: {problem}")
    with staged_dir(out_dir, overwrite=overwrite) as staging:
        torch.save(state, staging / WEIGHTS_FILE)
        (staging / META_FILE).write_text(json.dumps(meta.to_json(), indent=2) + "\n")
    return Path(out_dir)


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[EmbeddingModel, ModelMeta]:
    """Rebuild the model saved at ``path`` (a model directory or a file in it), in eval mode.

    Weights are read with ``torch.load(weights_only=True)``: a pickle that smuggles objects is
    refused, never executed. Missing, corrupt or mismatching files raise InputError naming
    the file.
    """
    ref = ModelRef.parse(path)
    if ref.in_mlflow:
        with tempfile.TemporaryDirectory(prefix="echoseek-model-") as tmp:
            return load_model(ref.local_dir(dst=tmp), device)
    directory = ref.local_dir()
    meta = read_meta(directory / META_FILE)
    model = build_model(meta)
    state = read_state_dict(directory / WEIGHTS_FILE, device)
    problem = state_dict_mismatch(state, model.state_dict())
    if problem:
        raise InputError(f"{directory / WEIGHTS_FILE}: does not match {META_FILE}: {problem}")
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def model_input(meta: ModelMeta) -> dict[str, Any]:
    """The input a model expects: ``size``, ``in_channels``, ``mean`` and ``std`` (fields of
    :class:`~echoseek.data.augment.AugmentConfig`)."""
    return {
        "size": meta.input_size[0],
        "in_channels": meta.in_channels,
        "mean": list(meta.mean),
        "std": list(meta.std),
    }


def eval_augment(meta: ModelMeta) -> AugmentConfig:
    """The model's own evaluation input (every embedder, evaluation and validation pass
    builds its transform from this): :func:`model_input` and no augmentation."""
    return AugmentConfig(**model_input(meta))


def read_meta(path: Path) -> ModelMeta:
    """Parse a ``model.json`` file into :class:`ModelMeta`."""
    if not path.is_file():
        raise InputError(
            f"{path}: not found (a model directory holds {META_FILE} + {WEIGHTS_FILE})"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    try:
        return ModelMeta.from_json(data)
    except EchoseekError as exc:
        raise InputError(f"{path}: {exc}") from None


def resolve_model_path(uri: str | Path, tracking: str = "", dst: str | Path | None = None) -> Path:
    """The local model directory for ``uri``.

    Accepts a model directory, a file inside it, or an MLflow URI (``models:/NAME/VERSION``,
    ``models:/NAME@ALIAS``, ``runs:/RUN_ID/PATH``) whose artifact directory holds
    ``model.json`` and ``model.pt``. MLflow URIs are downloaded from the tracking store
    ``tracking`` (default :func:`echoseek.tracking.tracking_uri`) into ``dst``, or a temporary
    directory the caller owns when ``dst`` is None.
    """
    return ModelRef.parse(uri).local_dir(tracking, dst)
