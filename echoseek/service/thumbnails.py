"""Thumbnails of corpus items, read from the dataset's own Parquet shards by item id.

The dataset directory comes from the deploy config; a request names only an item id, which
is looked up in a map built from the shards' ``id`` column (a few bytes per row). The image
bytes of that one row are read from its row group (:class:`echoseek.data.labelled.RowReader`).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from echoseek.data.dataset import decode_png, read_descriptor, shard_paths
from echoseek.data.labelled import RowReader
from echoseek.errors import InputError

THUMBNAIL_SIDE = 160
THUMBNAIL_CACHE_BYTES = 64 << 20  # row groups of recent hits: a results page asks for their rows


class Thumbnails:
    """PNG thumbnails (longest side ``side`` pixels) of a dataset's rows by their id."""

    def __init__(self, dataset: str | Path, side: int = THUMBNAIL_SIDE) -> None:
        self.sha256 = str(read_descriptor(dataset).get("sha256", ""))
        files = [str(f) for f in shard_paths(dataset)]
        self.where: dict[str, tuple[int, int]] = {}
        for s, file in enumerate(files):
            ids = pq.read_table(file, columns=["id"]).column("id").to_pylist()
            self.where.update((str(item), (s, r)) for r, item in enumerate(ids))
        self.side = side
        self._reader = RowReader(files, cache_bytes=THUMBNAIL_CACHE_BYTES)
        self._lock = threading.Lock()  # one ParquetFile per shard, shared by request threads

    def png(self, item_id: str) -> bytes:
        """The thumbnail of row ``item_id`` as PNG bytes; InputError when there is none."""
        if item_id not in self.where:
            raise InputError(f"id {item_id!r}: not in the dataset")
        shard, row = self.where[item_id]
        with self._lock:
            data = self._reader.images(np.array([shard]), np.array([row]))[0]
        img = Image.fromarray(decode_png(data))
        img.thumbnail((self.side, self.side))
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()
