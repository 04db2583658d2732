"""The real-image sets of bench/bench_quality_real.py: split by item, stratified, reproducible."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import real_sets


def test_split_by_item_is_disjoint_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(10), [180, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    split = real_sets.split_by_item(labels, (900, 300, 597), seed=0)
    rows = np.concatenate(list(split.values()))
    assert len(rows) == len(np.unique(rows)) == len(labels)  # every item in exactly one split
    assert [len(split[s]) for s in real_sets.SPLITS] == pytest.approx([900, 300, 597], abs=6)
    for part in split.values():  # each class in the same proportion, within one item
        share = np.bincount(labels[part], minlength=10) / np.bincount(labels)
        assert share.max() - share.min() < 2 / 174
    again = real_sets.split_by_item(labels, (900, 300, 597), seed=0)
    other = real_sets.split_by_item(labels, (900, 300, 597), seed=1)
    assert all(np.array_equal(split[s], again[s]) for s in split)
    assert not np.array_equal(split["test"], other["test"])
    with pytest.raises(ValueError, match="exceed"):
        real_sets.split_by_item(labels, (1000, 500, 500), seed=0)


def test_digits_and_fashion_load_as_labelled_uint8_images(tmp_path: Path) -> None:
    digits = real_sets.digits()
    assert digits.images.shape == (1797, 8, 8) and digits.images.dtype == np.uint8
    assert digits.images.max() == 255 and set(digits.labels) == set(range(10))
    for label in range(10):  # the npm package's layout: one {"data": [[784 values], ...]} per class
        rows = [[label * 20 + i] * 784 for i in range(3)]
        (tmp_path / f"{label}.json").write_text(json.dumps({"data": rows}))
    fashion = real_sets.fashion(per_class=2, folder=tmp_path)
    assert fashion.images.shape == (20, 28, 28)
    assert list(fashion.labels) == [c for c in range(10) for _ in range(2)]
    assert fashion.images[3, 5, 5] == 21  # class 1's second image
    with pytest.raises(SystemExit, match="make real-sets"):
        real_sets.fashion(folder=tmp_path / "missing")


def test_write_splits_lays_out_one_folder_per_split_and_class(tmp_path: Path) -> None:
    from echoseek.ingest.build import LabelSpec, WriteSpec, ingest

    data = real_sets.ImageSet(
        "t", np.arange(6 * 64, dtype=np.uint8).reshape(6, 8, 8), np.array([0, 1] * 3)
    )
    split = {"train": np.array([0, 1, 2, 3]), "val": np.array([4]), "test": np.array([5])}
    folders = real_sets.write_splits(data, split, tmp_path)
    desc = ingest(folders["train"], tmp_path / "ds", labels=LabelSpec(None, 0, False, True),
                  write=WriteSpec(None, 1024, False, 1 << 26))  # fmt: skip
    assert desc["count"] == 4 and desc["label_counts"] == {"0": 2, "1": 2}
    assert sorted(p.name for p in folders["test"].rglob("*.png")) == ["t_00005.png"]
