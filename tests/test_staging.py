"""Staging litter: owner-named staging dirs, cleanup on interrupt, stale dirs of killed runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from echoseek.data.dataset import DatasetWriter, Row, read_descriptor, shard_paths
from echoseek.jobs import ingest
from echoseek.storage import (
    STALE_AFTER_S,
    parse_litter,
    remove_stale,
    staged_dir,
    this_host,
)
from tests.litter import dead_pid, litter, run_until_marker


def test_staging_dir_names_its_owner(tmp_path: Path) -> None:
    with staged_dir(tmp_path / "out") as staging:
        owner = parse_litter(staging.name)
        assert owner is not None and staging.parent == tmp_path
        assert (owner.target, owner.kind) == ("out", "staging")
        assert (owner.host, owner.pid) == (this_host(), os.getpid())
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_keyboard_interrupt_removes_staging_and_created_parents(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), staged_dir(tmp_path / "a" / "b" / "out") as staging:
        (staging / "part.bin").write_bytes(b"x" * 100)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # no staging dir, no empty a/b/


def test_dataset_writer_interrupted_leaves_nothing(tmp_path: Path) -> None:
    image = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(KeyboardInterrupt), DatasetWriter(tmp_path / "ds", {}, shard_size=2) as w:
        for i in range(5):
            w.add(Row(f"r{i}", image, "test"))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_stale_litter_is_removed_and_live_litter_is_left(tmp_path: Path) -> None:
    host, old = this_host(), time.time() - 2 * STALE_AFTER_S
    names = {
        "dead": f".out.staging-{host}-{dead_pid()}-0123abcd",
        "dead trash": f".out.trash-{host}-{dead_pid()}-0123abcd",
        "live": f".out.staging-{host}-{os.getppid()}-0123abcd",
        "other host, recent": ".out.staging-elsewhere-1-0123abcd",
        "other host, idle": ".out.staging-elsewhere-2-0123abcd",
        "other output": f".other.staging-{host}-{dead_pid()}-0123abcd",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "part-00000.parquet").write_bytes(b"half")
    idle = tmp_path / names["other host, idle"]
    os.utime(idle / "part-00000.parquet", (old, old))
    os.utime(idle, (old, old))
    with staged_dir(tmp_path / "out") as staging:
        (staging / "x").write_text("new")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {
        "out",
        names["live"],
        names["other host, recent"],
        names["other output"],  # another output's litter is that output's business
    }
    assert remove_stale(tmp_path) == [tmp_path / names["other output"]]


INGEST_UNTIL_KILLED = """
import sys, time
from pathlib import Path
from echoseek.data import dataset

real = dataset.DatasetWriter._flush

def flush_then_hang(self):
    real(self)
    Path(sys.argv[1]).write_text("one shard written")
    time.sleep(600)

dataset.DatasetWriter._flush = flush_then_hang
from echoseek.cli import main
sys.exit(main(["ingest", *sys.argv[2:]]))
"""


def test_killed_ingest_litter_is_recognised_and_removed_by_the_next_run(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (16, 16, 12), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "d.mat", {"frames": frames})
    out = tmp_path / "work" / "ds"
    args = (f"input={tmp_path / 'd.mat'}", f"output={out}", "shard_size=4")
    proc = run_until_marker(INGEST_UNTIL_KILLED, tmp_path / "marker", *args)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (stale,) = litter(out.parent)
    owner = parse_litter(stale.name)
    assert owner is not None and (owner.target, owner.kind) == ("ds", "staging")
    assert (owner.host, owner.pid) == (this_host(), proc.pid)
    assert (stale / "part-00000.parquet").is_file() and not out.exists()

    desc = ingest.run(ingest.Config(input=args[0][6:], output=str(out), shard_size=4))
    assert litter(out.parent) == [] and [p.name for p in out.parent.iterdir()] == ["ds"]
    assert read_descriptor(out)["count"] == desc["count"] == 12
    assert len(shard_paths(out)) == 3
