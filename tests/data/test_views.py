"""Frame batches for training and evaluation, directly and through Ray Data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from echoseek.data.dataset import decode_png, iter_batches, shard_paths
from echoseek.data.frames import MIXED_SIDE_FACTOR, frame_shape
from echoseek.data.views import (
    UNLABELLED,
    eval_view,
    frame_batch,
    frame_dataset,
    frame_shards,
    row_numbers,
    shard_offsets,
)
from tests.datasets import ingested_stack, random_stack

SHAPE = (24, 24)  # the fixture's frames


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("views")
    return ingested_stack(tmp, random_stack(24, 24, 10), labelled=8, shard_size=4)


def numpy_batch(path: Path) -> dict[str, np.ndarray]:
    """Every row of the dataset as one Ray-Data-style numpy batch."""
    rows = [r for b in iter_batches(path) for r in b.to_pylist()]
    return {name: np.array([r[name] for r in rows], dtype=object) for name in rows[0]}


def test_row_numbers_are_dense_in_stored_order(dataset: Path) -> None:
    rows = row_numbers(str(dataset))
    assert sorted(rows.values()) == list(range(10))
    assert list(rows) == [r["id"] for b in iter_batches(dataset) for r in b.to_pylist()]


def test_frame_batch_decodes_uint8_frames_with_index_and_labels(dataset: Path) -> None:
    batch = numpy_batch(dataset)
    rows = row_numbers(str(dataset))
    index = np.array([rows[i] for i in batch["id"]])
    out = frame_batch(batch, channels=1, shape=SHAPE, index=index)
    assert out["image"].shape == (10, 1, 24, 24) and out["image"].dtype == np.uint8
    for i, data in enumerate(batch["image"]):
        np.testing.assert_array_equal(out["image"][i, 0], decode_png(data))  # lossless
    assert out["index"].tolist() == list(range(10))
    assert out["label"].tolist() == [0, 1] * 4 + [UNLABELLED] * 2
    rgb = frame_batch(batch, channels=3, shape=(12, 12))  # other channels and frame shape
    assert rgb["image"].shape == (10, 3, 12, 12) and "index" not in rgb
    keep = frozenset(batch["id"][2:4])
    kept = frame_batch(batch, channels=1, shape=SHAPE, index=index, keep=keep)
    assert kept["index"].tolist() == [2, 3] and kept["label"].tolist() == [0, 1]


def test_frame_shape_is_the_datasets_own_or_a_square_for_mixed_sizes(dataset: Path) -> None:
    from echoseek.data.dataset import read_descriptor

    assert frame_shape(read_descriptor(dataset), 16) == SHAPE
    assert frame_shape({"image": None}, 16) == (16 * MIXED_SIDE_FACTOR,) * 2


LABEL_OF_ROW = [0, 1] * 4 + [UNLABELLED] * 2  # the fixture's labels in stored order


def pass_indices(dataset: Path, epochs: int, seed: int) -> list[list[int]]:
    """Row indices of each pass of :func:`frame_shards` over the work list, in order."""
    files = [str(f) for f in shard_paths(dataset)]
    work = {"id": np.arange(epochs * len(files))}
    batches = list(
        frame_shards(
            work,
            files=files,
            seed=seed,
            channels=1,
            shape=SHAPE,
            offsets=shard_offsets(str(dataset)),
            batch_size=3,
        )
    )
    flat = [int(i) for b in batches for i in b["index"]]
    labels = [int(v) for b in batches for v in b["label"]]
    assert labels == [LABEL_OF_ROW[i] for i in flat]  # each index is that row's number
    return [flat[e * 10 : (e + 1) * 10] for e in range(epochs)]


def test_every_pass_visits_each_row_once_in_its_own_seeded_order(dataset: Path) -> None:
    passes = pass_indices(dataset, epochs=3, seed=0)
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert len({tuple(p) for p in passes}) == 3  # each pass shuffled differently
    assert pass_indices(dataset, epochs=3, seed=0) == passes  # seeded
    assert pass_indices(dataset, epochs=3, seed=1) != passes


@pytest.mark.slow
def test_ray_data_stream_covers_every_epoch(dataset: Path, ray_session: object) -> None:
    stream = frame_dataset(str(dataset), 1, 16, batch_size=3, epochs=4, seed=5)
    seen = [int(i) for b in stream.iter_batches(batch_size=7) for i in b["index"]]
    assert sorted(seen) == sorted(list(range(10)) * 4)


@pytest.mark.slow
def test_ray_data_pipelines_yield_torch_batches(dataset: Path, ray_session: object) -> None:
    seen = 0
    for batch in frame_dataset(str(dataset), 1, 16, batch_size=4).iter_torch_batches(batch_size=5):
        assert batch["image"].shape[1:] == (1, 24, 24) and batch["image"].dtype == torch.uint8
        assert batch["index"].dtype == torch.int64
        seen += len(batch["index"])
    assert seen == 10


@pytest.mark.slow
def test_eval_view_is_frame_batch_of_every_kept_row(dataset: Path, ray_session: object) -> None:
    direct = frame_batch(numpy_batch(dataset), channels=1, shape=SHAPE)

    def rows(view: Any) -> tuple[np.ndarray, np.ndarray]:
        parts = list(view.iter_batches(batch_size=3, batch_format="numpy"))
        images = np.concatenate([p["image"] for p in parts])
        return images, np.concatenate([p["label"] for p in parts])

    images, labels = rows(eval_view(str(dataset), 1, 16))
    assert images.dtype == np.uint8 and images.shape == (10, 1, 24, 24)
    np.testing.assert_array_equal(images, direct["image"])  # same transform, stored order
    assert labels.tolist() == direct["label"].tolist()
    assert sorted(labels.tolist()) == sorted([0, 1] * 4 + [UNLABELLED] * 2)
    ids = [str(i) for i in numpy_batch(dataset)["id"]]
    kept_images, kept = rows(eval_view(str(dataset), 1, 16, keep=frozenset(ids[3:6])))
    assert kept.tolist() == direct["label"][3:6].tolist()
    np.testing.assert_array_equal(kept_images, direct["image"][3:6])
    first, _ = rows(eval_view(str(dataset), 1, 16, limit=7))
    np.testing.assert_array_equal(first, direct["image"][:7])


def test_frames_of_another_size_are_resized_and_channels_converted() -> None:
    from echoseek.data.dataset import encode_png
    from echoseek.data.frames import decode_frames

    rgb = np.zeros((30, 50, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red: luma 0.299 x 200 = 60
    gray = np.full((24, 24), 90, dtype=np.uint8)
    out = decode_frames([encode_png(rgb), encode_png(gray)], 1, (24, 24))
    assert out.shape == (2, 1, 24, 24) and out.dtype == np.uint8
    assert set(np.unique(out[0])) == {60} and set(np.unique(out[1])) == {90}
    assert decode_frames([encode_png(gray)], 3, (12, 12)).shape == (1, 3, 12, 12)


def test_the_decode_tasks_code_imports_no_torch() -> None:
    """Ray Data's decode tasks import echoseek.data.views: without torch, each task process
    starts ~1.5 s sooner (every task, every node)."""
    import subprocess
    import sys

    code = "import sys, echoseek.data.views; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
