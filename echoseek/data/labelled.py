"""Labelled images held for m-per-class fine-tuning batches, decoded ahead of the step.

FastAP needs positives in every batch, so batches are index lists drawn by
:class:`echoseek.data.samplers.MPerClassBatchSampler`, which needs random access to the
labelled rows. :class:`LabelledImages` keeps the labelled rows' encoded PNG bytes (as stored,
compressed; unlabelled rows are dropped) collected from a Ray Data stream, and
:func:`decoded_batches` decodes and augments each index batch in a background thread, a few
batches ahead, so the training step does not wait on decoding.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from echoseek.data.dataset import decode_png
from echoseek.embedding import to_chw
from echoseek.errors import InputError


@dataclass
class LabelledImages:
    """The labelled rows of a dataset: ids, int64 labels and PNG bytes, in stream order."""

    ids: list[str] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    images: list[bytes] = field(default_factory=list)

    @classmethod
    def from_batches(cls, batches: Iterable[dict[str, np.ndarray]]) -> LabelledImages:
        """Collect the rows with a label from numpy batches (``id``, ``label``, ``image``)."""
        ids: list[str] = []
        labels: list[int] = []
        images: list[bytes] = []
        for batch in batches:
            for item, label, image in zip(batch["id"], batch["label"], batch["image"], strict=True):
                if label is None or (isinstance(label, float) and np.isnan(label)):
                    continue
                ids.append(str(item))
                labels.append(int(label))
                images.append(bytes(image))
        if not ids:
            raise InputError("the fine-tuning dataset has no labelled rows")
        return cls(ids, np.asarray(labels, dtype=np.int64), images)

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices: list[int], transform: nn.Module, channels: int) -> dict[str, Any]:
        """Decode and transform the rows ``indices``: ``{"image": NxCxSxS, "label": N}``."""
        images = [transform(to_chw(decode_png(self.images[i]), channels)) for i in indices]
        return {
            "image": torch.stack(images),  # NxCxSxS
            "label": torch.from_numpy(self.labels[indices]),
        }


def decoded_batches(
    store: LabelledImages,
    index_batches: Iterable[list[int]],
    transform: nn.Module,
    channels: int,
    ahead: int = 2,
) -> Iterator[dict[str, Any]]:
    """Yield ``store.batch(...)`` for each index batch, prepared ``ahead`` batches early in a
    background thread. An exception in the thread is re-raised here."""
    done = object()
    slots: queue.Queue[Any] = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def produce() -> None:
        try:
            for indices in index_batches:
                if stop.is_set():
                    return
                slots.put(store.batch(list(indices), transform, channels))
            slots.put(done)
        except BaseException as exc:  # handed to the consumer
            slots.put(exc)

    worker = threading.Thread(target=produce, name="echoseek-decode", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not slots.empty():  # unblock a producer waiting on a full queue
            slots.get_nowait()
        worker.join(timeout=5)
