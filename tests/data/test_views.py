"""Two-view and evaluation batches for training, directly and through Ray Data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from echoseek.data.augment import AugmentConfig
from echoseek.data.dataset import iter_batches, shard_paths
from echoseek.data.views import (
    UNLABELLED,
    eval_batch,
    eval_view,
    row_numbers,
    shard_offsets,
    two_view_batch,
    two_view_dataset,
    two_view_shards,
)
from tests.datasets import ingested_stack, random_stack

AUG = AugmentConfig(size=16)


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


def test_two_views_differ_and_keep_index_and_labels(dataset: Path) -> None:
    torch.manual_seed(0)
    batch = numpy_batch(dataset)
    rows = row_numbers(str(dataset))
    index = np.array([rows[i] for i in batch["id"]])
    out = two_view_batch(batch, augment=AUG, index=index)
    assert out["view1"].shape == out["view2"].shape == (10, 1, 16, 16)
    assert out["view1"].dtype == np.float32
    assert not np.allclose(out["view1"], out["view2"])  # independent augmentations
    assert out["index"].tolist() == list(range(10))
    assert out["label"].tolist() == [0, 1] * 4 + [UNLABELLED] * 2


def test_eval_batch_is_deterministic(dataset: Path) -> None:
    batch = numpy_batch(dataset)
    a, b = eval_batch(batch, augment=AUG), eval_batch(batch, augment=AUG)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].shape == (10, 1, 16, 16)


LABEL_OF_ROW = [0, 1] * 4 + [UNLABELLED] * 2  # the fixture's labels in stored order


def pass_indices(dataset: Path, epochs: int, seed: int) -> list[list[int]]:
    """Row indices of each pass of :func:`two_view_shards` over the work list, in order."""
    files = [str(f) for f in shard_paths(dataset)]
    work = {"id": np.arange(epochs * len(files))}
    batches = list(
        two_view_shards(
            work,
            files=files,
            seed=seed,
            augment=AUG,
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
    stream = two_view_dataset(str(dataset), AUG, batch_size=3, epochs=4, seed=5)
    seen = [int(i) for b in stream.iter_batches(batch_size=7) for i in b["index"]]
    assert sorted(seen) == sorted(list(range(10)) * 4)


@pytest.mark.slow
def test_ray_data_pipelines_yield_torch_batches(dataset: Path, ray_session: object) -> None:
    seen = 0
    for batch in two_view_dataset(str(dataset), AUG, batch_size=4).iter_torch_batches(batch_size=5):
        assert batch["view1"].shape[1:] == (1, 16, 16) and batch["index"].dtype == torch.int64
        seen += len(batch["index"])
    assert seen == 10


@pytest.mark.slow
def test_eval_view_is_eval_batch_of_every_kept_row(dataset: Path, ray_session: object) -> None:
    direct = eval_batch(numpy_batch(dataset), augment=AUG)

    def rows(view: Any) -> tuple[np.ndarray, np.ndarray]:
        parts = list(view.iter_batches(batch_size=3, batch_format="numpy"))
        images = np.concatenate([p["image"] for p in parts])
        return images, np.concatenate([p["label"] for p in parts])

    images, labels = rows(eval_view(str(dataset), AUG))
    assert images.dtype == np.float32 and images.shape == (10, 1, 16, 16)
    np.testing.assert_array_equal(images, direct["image"])  # same transform, stored order
    assert labels.tolist() == direct["label"].tolist()
    assert sorted(labels.tolist()) == sorted([0, 1] * 4 + [UNLABELLED] * 2)
    ids = [str(i) for i in numpy_batch(dataset)["id"]]
    kept_images, kept = rows(eval_view(str(dataset), AUG, keep=frozenset(ids[3:6])))
    assert kept.tolist() == direct["label"][3:6].tolist()
    np.testing.assert_array_equal(kept_images, direct["image"][3:6])
    first, _ = rows(eval_view(str(dataset), AUG, limit=7))
    np.testing.assert_array_equal(first, direct["image"][:7])
