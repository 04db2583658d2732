"""Embedding: images to vectors with a model artifact's own eval transform.

:mod:`embedder` turns a list of images into L2-normalised vectors (a model artifact, or the
raw-pixel baseline); :mod:`stream` embeds a whole dataset on Ray Data with a pool of actors,
one model each.
"""

from echoseek.embedding.embedder import Embedder, ModelEmbedder, PixelEmbedder, build_embedder

__all__ = ["Embedder", "ModelEmbedder", "PixelEmbedder", "build_embedder"]
