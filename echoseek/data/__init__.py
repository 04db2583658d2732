"""Data: ingest, the phantom generator, the dataset and vectors artifacts.

Augmentations (:mod:`echoseek.data.augment`) and samplers (:mod:`echoseek.data.samplers`)
need torch; import them from their modules so that ``import echoseek.data`` stays light.
"""

from echoseek.data.dataset import (
    DatasetWriter,
    Row,
    decode_png,
    encode_png,
    iter_batches,
    read_dataset,
    read_descriptor,
)
from echoseek.data.phantom import Phantom, PhantomParams, generate_phantom, write_phantom

__all__ = [
    "DatasetWriter",
    "Phantom",
    "PhantomParams",
    "Row",
    "decode_png",
    "encode_png",
    "generate_phantom",
    "iter_batches",
    "read_dataset",
    "read_descriptor",
    "write_phantom",
]
