"""Index build and update leave nothing behind on failure; ids are unique, non-null, and
deleting nothing new publishes nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from echoseek.cli import main as cli
from echoseek.errors import ConfigError, InputError
from echoseek.index import add_vectors, build_index, list_versions, open_index, read_latest
from echoseek.index.params import choose_params
from echoseek.index.publish import apply_retention
from echoseek.storage import parse_litter, this_host
from tests.index_fixtures import clustered
from tests.litter import dead_pid, litter, run_until_marker


def one_line_error(capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def id_vectors(path: Path, ids: list[str | None], dim: int = 8, seed: int = 0) -> Path:
    """A Parquet vector file with an ``id`` column."""
    x = clustered(len(ids), dim, 3, seed=seed)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "vector": vectors}), path)
    return path


def test_failed_first_build_leaves_no_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = clustered(300, 8, 4, seed=1)
    x[-1, 3] = np.nan
    np.save(tmp_path / "bad.npy", x)
    root = tmp_path / "new" / "index"
    args = ["index", "build", f"input={tmp_path / 'bad.npy'}", f"output={root}"]
    assert cli([*args, "build.use_ray=false"]) == 2
    one_line_error(capsys, "bad.npy: row 299 has a NaN")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy"]  # no root, no new/


def test_unknown_factory_leaves_no_root(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", clustered(300, 8, 4, seed=2))
    with pytest.raises(ConfigError, match="faiss cannot build 'IVF4,Bogus99'"):
        params = choose_params(300, 8, factory="IVF4,Bogus99")  # refused before any build
        build_index(tmp_path / "x.npy", tmp_path / "root", params, use_ray=False)
    assert not (tmp_path / "root").exists()


BUILD_UNTIL_KILLED = """
import sys, time
from pathlib import Path
import echoseek.index.build as build

real = build.fill_from_source

def fill_then_hang(*args, **kwargs):
    entry = real(*args, **kwargs)
    Path(sys.argv[1]).write_text("one shard written")
    time.sleep(600)

build.fill_from_source = fill_then_hang
from echoseek.cli import main
sys.exit(main(["index", "build", *sys.argv[2:]]))
"""


def test_killed_build_litter_is_recognised_and_removed_by_the_next_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", clustered(2_000, 8, 10, seed=3))
    root = tmp_path / "index"
    args = [f"input={tmp_path / 'x.npy'}", f"output={root}", "build.use_ray=false"]
    args += ["index.kind=flat", "build.num_shards=2"]
    proc = run_until_marker(BUILD_UNTIL_KILLED, tmp_path / "marker", *args)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (stale,) = litter(root)
    owner = parse_litter(stale.name)
    assert owner is not None and owner.kind == "staging" and owner.target.startswith("v")
    assert (owner.host, owner.pid) == (this_host(), proc.pid)
    assert (stale / "shard-00000.faiss").is_file() and list_versions(root) == []

    assert cli(["index", "build", *args]) == 0
    capsys.readouterr()
    assert litter(root) == [] and len(list_versions(root)) == 1
    with open_index(root) as index:
        assert index.ntotal == 2_000
        _, ids = index.search(np.load(tmp_path / "x.npy")[:3], k=1)
    assert ids.ravel().tolist() == [0, 1, 2]


def test_retention_step_removes_stale_staging(index_copy: Path) -> None:
    dead = (
        index_copy / f".v20000101T000000000000-abcdef.staging-{this_host()}-{dead_pid()}-0123abcd"
    )
    live = (
        index_copy / f".v20000101T000000000000-fedcba.staging-{this_host()}-{os.getpid()}-0123abcd"
    )
    for d in (dead, live):
        d.mkdir()
        (d / "shard-00000.faiss").write_bytes(b"half")
    apply_retention(index_copy, 0)
    assert not dead.exists() and live.is_dir()


def test_duplicate_ids_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vec").mkdir()
    id_vectors(tmp_path / "vec" / "a.parquet", ["a", "b", "c"])
    id_vectors(tmp_path / "vec" / "b.parquet", ["d", "b"], seed=1)
    root = tmp_path / "index"
    assert cli(["index", "build", f"input={tmp_path / 'vec'}", f"output={root}"]) == 2
    one_line_error(capsys, f"{tmp_path / 'vec'}: duplicate vector id 'b'", "a.parquet row 1")
    assert not root.exists()


def test_null_id_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = id_vectors(tmp_path / "v.parquet", ["a", None, "c"])
    root = tmp_path / "index"
    assert cli(["index", "build", f"input={path}", f"output={root}"]) == 2
    one_line_error(capsys, "v.parquet: row 1 has a null id")
    assert not root.exists()


def test_add_refuses_duplicate_and_already_indexed_ids(index_copy: Path) -> None:
    before = list_versions(index_copy)
    x = clustered(2, 32, 1, seed=5)
    with pytest.raises(InputError, match="duplicate vector id 'new'"):
        add_vectors(index_copy, x, ids=["new", "new"])
    with pytest.raises(InputError, match="vector id '7' is already in index version"):
        add_vectors(index_copy, x, ids=["new", "7"])
    with pytest.raises(InputError, match="row 1 has a null id"):
        add_vectors(index_copy, x, ids=["new", None])  # type: ignore[list-item]
    assert list_versions(index_copy) == before and litter(index_copy) == []


def test_deleting_nothing_new_publishes_nothing(
    index_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delete = ["index", "delete", f"output={index_copy}"]
    assert cli([*delete, "ids=[7]"]) == 0
    capsys.readouterr()
    versions, latest = list_versions(index_copy), read_latest(index_copy)

    assert cli([*delete, "ids=[7]"]) == 2
    one_line_error(capsys, "nothing to delete: id '7' is already deleted", latest)
    assert cli([*delete, "ids=[nope]"]) == 2
    one_line_error(capsys, "id 'nope': not in index version")
    assert list_versions(index_copy) == versions and read_latest(index_copy) == latest
    assert litter(index_copy) == []

    assert cli([*delete, "ids=[7,8]"]) == 0
    out = capsys.readouterr().out
    assert "1 id(s) deleted (1 already deleted)" in out, out
