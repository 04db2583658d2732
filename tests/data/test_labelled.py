"""Fine-tuning input: rows read by position through a bounded row-group cache, decoded once
and kept up to a budget, prepared in background threads, in the sampler's order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echoseek.data.dataset import ROW_GROUP_ROWS, DatasetWriter, Row
from echoseek.data.labelled import LabelledFrames, RowReader, decoded_batches, label_index

ROWS = 3 * ROW_GROUP_ROWS + 17  # several row groups in two shards, the last one partial


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each frame is filled with its row number mod 256 and labelled row % 5."""
    path = tmp_path_factory.mktemp("labelled") / "ds"
    with DatasetWriter(path, {"kind": "test"}, shard_size=2 * ROW_GROUP_ROWS) as writer:
        for i in range(ROWS):
            image = np.full((12, 10), i % 256, dtype=np.uint8)
            writer.add(Row(id=f"r{i}", image=image, source="test", label=i % 5))
    return path


def frame_values(batch: dict) -> list[int]:
    return [int(frame[0, 0, 0]) for frame in batch["image"]]


def test_rows_come_back_in_the_order_asked_across_shards_and_groups(dataset: Path) -> None:
    index = label_index(dataset)
    picks = np.random.default_rng(0).permutation(len(index))[:200]
    batch = LabelledFrames(index, 1, (12, 10)).batch(picks)
    assert frame_values(batch) == [int(p % 256) for p in picks]
    assert batch["label"].tolist() == [int(p % 5) for p in picks]


def test_the_cache_keeps_at_most_its_budget_and_still_reads_every_row(dataset: Path) -> None:
    index = label_index(dataset)
    whole = RowReader(index.files)
    whole.images(index.shard, index.row)
    group_bytes = max(column.nbytes for column in whole._groups.values())
    assert len(whole._groups) == 4  # every row group read once, all kept
    small = RowReader(index.files, cache_bytes=group_bytes + 1)  # room for one group
    for _ in range(2):
        data = small.images(index.shard, index.row)
        assert small._held <= small.cache_bytes and len(small._groups) == 1
    assert data == whole.images(index.shard, index.row)
    none = RowReader(index.files, cache_bytes=0)
    assert none.images(index.shard[:3], index.row[:3]) == data[:3] and not none._groups


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("kept", [0, 1 << 20], ids=["decoded-each-time", "kept"])
def test_threads_yield_the_sampler_order(dataset: Path, threads: int, kept: int) -> None:
    index = label_index(dataset)
    rng = np.random.default_rng(1)
    picks = [rng.choice(len(index), 16, replace=False).tolist() for _ in range(12)]
    reader = RowReader(index.files, cache_bytes=0)  # every batch reads: slow and uneven
    frames = LabelledFrames(index, 1, (12, 10), cache_bytes=kept, reader=reader)
    for _ in range(2):  # with frames kept, threads fill the array at once, then read it
        batches = list(decoded_batches(frames, picks, threads=threads))
        assert [frame_values(b) for b in batches] == [[p % 256 for p in ps] for ps in picks]


def test_an_error_in_a_decode_thread_reaches_the_consumer(dataset: Path) -> None:
    index = label_index(dataset)
    picks = [[0, 1], [2, len(index) + 5]]  # the second names a row that does not exist
    stream = decoded_batches(LabelledFrames(index, 1, (12, 10)), picks, threads=2)
    assert frame_values(next(stream)) == [0, 1]
    with pytest.raises(IndexError):
        next(stream)


class CountingReader(RowReader):
    """A real reader that also counts the rows it was asked for."""

    def __init__(self, files: list[str]) -> None:
        super().__init__(files)
        self.rows_read = 0

    def images(self, shard: np.ndarray, row: np.ndarray) -> list[bytes]:
        self.rows_read += len(row)
        return super().images(shard, row)


def test_frames_are_decoded_once_and_the_byte_cache_dropped_when_all_are_kept(
    dataset: Path,
) -> None:
    index = label_index(dataset)
    reader = CountingReader(index.files)
    frames = LabelledFrames(index, 1, (12, 10), reader=reader)
    epochs = [np.random.default_rng(e).permutation(len(index)) for e in range(3)]
    for order in epochs:
        for start in range(0, len(order), 64):
            picks = order[start : start + 64]
            assert frame_values(frames.batch(picks)) == [int(p % 256) for p in picks]
        assert reader.rows_read == len(index)  # the first pass read every row, later ones none
        assert not reader._groups and reader._held == 0  # its bytes dropped once all were kept


def test_a_budget_smaller_than_the_set_keeps_the_first_rows_and_reads_the_rest(
    dataset: Path,
) -> None:
    index = label_index(dataset)
    reader = CountingReader(index.files)
    frames = LabelledFrames(index, 1, (12, 10), cache_bytes=10 * 12 * 10 + 5, reader=reader)
    assert frames.kept == 10
    picks = np.array([3, 40, 9, 3, 200, len(index) - 1])
    for passes in (1, 2, 3):
        assert frame_values(frames.batch(picks)) == [int(p % 256) for p in picks]
        assert reader.rows_read == len(picks) + 3 * (passes - 1)  # rows past the budget again
    assert reader._groups  # not every row is kept: the row groups stay cached
