"""echoseek.models: backbones, self-supervised methods, the embedding head and model artifacts.

Pretraining picks a method by name (:data:`METHODS`, :func:`build_method`); fine-tuning wraps
the backbone in an :class:`EmbeddingModel`; :func:`save_model`/:func:`load_model` read and write
the model artifact (``model.pt`` + ``model.json``).
"""

from echoseek.models.artifact import (
    ModelMeta,
    build_model,
    load_model,
    read_meta,
    resolve_model_path,
    save_model,
)
from echoseek.models.backbones import BACKBONES, ResNetBackbone, build_backbone
from echoseek.models.head import EmbeddingHead, EmbeddingModel
from echoseek.models.pooling import GeM
from echoseek.models.ssl import METHODS, build_method
from echoseek.models.ssl.barlow import BarlowTwins
from echoseek.models.ssl.base import SSLMethod
from echoseek.models.ssl.byol import BYOL
from echoseek.models.ssl.instdisc import InstDisc
from echoseek.models.ssl.memory_bank import MemoryBank, gather_across_ranks
from echoseek.models.ssl.simclr import SimCLR
from echoseek.models.ssl.simsiam import SimSiam

__all__ = [
    "BACKBONES",
    "BYOL",
    "METHODS",
    "BarlowTwins",
    "EmbeddingHead",
    "EmbeddingModel",
    "GeM",
    "InstDisc",
    "MemoryBank",
    "ModelMeta",
    "ResNetBackbone",
    "SSLMethod",
    "SimCLR",
    "SimSiam",
    "build_backbone",
    "build_method",
    "build_model",
    "gather_across_ranks",
    "load_model",
    "read_meta",
    "resolve_model_path",
    "save_model",
]
