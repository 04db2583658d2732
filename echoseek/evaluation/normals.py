"""The normal items an anomaly score compares with, as ids and unit vectors, and the embedder
that puts new items in the same space: a dataset embedded on the fly, or the stored vectors of
an index version (cosine indexes only) with the index's own model unless another is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from echoseek.data.dataset import DESCRIPTOR
from echoseek.embedding import Embedder, build_embedder
from echoseek.errors import ConfigError, InputError
from echoseek.evaluation.corpus import embed_dataset
from echoseek.index import open_index


def load_normals(
    reference: str, model: str, pixel_size: int, batch_size: int, tracking: str = ""
) -> tuple[list[str], np.ndarray, Embedder]:
    """(ids, (N, D) unit vectors, embedder) of ``reference``: a dataset directory (embedded
    with ``model``, "" = pixels) or an index root or version (InputError when neither)."""
    if not reference:
        raise ConfigError("reference is required: a dataset directory or an index of normals")
    if (Path(reference) / DESCRIPTOR).is_file():
        embed = build_embedder(model or "pixels", pixel_size, tracking=tracking)
        ids, vectors, _ = embed_dataset(reference, embed, batch_size)
        return ids, vectors, embed
    if not any((Path(reference) / name).is_file() for name in ("LATEST", "manifest.json")):
        raise InputError(
            f"reference: {reference} is neither a dataset ({DESCRIPTOR}) nor an index root "
            "(LATEST) or version (manifest.json)"
        )
    with open_index(reference) as reader:
        if reader.metric != "ip" or not reader.manifest.get("normalize"):
            raise InputError(f"reference: index {reader.version} is not cosine (normalised ip)")
        model = model or str(reader.manifest.get("model_uri") or "")
        tracking = tracking or str(reader.manifest.get("model_tracking_uri") or "")
        ids, vectors = reader.live_items()
    if not model:
        raise ConfigError("model: the index records no model; name the one its vectors came from")
    return ids, vectors, build_embedder(model, pixel_size, tracking=tracking)
