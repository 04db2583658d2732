"""Data: the dataset and vectors artifacts, Ray Data streams, augmentations and samplers.

Augmentations (:mod:`echoseek.data.augment`), samplers (:mod:`echoseek.data.samplers`) and the
streams (:mod:`echoseek.data.views`) need torch or Ray; import them from their modules so that
``import echoseek.data`` stays light.
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

__all__ = [
    "DatasetWriter",
    "Row",
    "decode_png",
    "encode_png",
    "iter_batches",
    "read_dataset",
    "read_descriptor",
]
