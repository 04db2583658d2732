"""Artifacts are untrusted input: no descriptor entry leads outside its artifact, descriptors
are validated as a whole, and dataset shards are checked against their checksums.

Every case is refused with an :class:`InputError` naming the descriptor file and the entry,
through the library (``open_index``, ``shard_paths``, ``open_vectors``) and through the CLI
(exit 2, one line on stderr), and leaves nothing changed on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from echoseek.cli import main as cli
from echoseek.data.dataset import iter_batches, read_descriptor, shard_paths
from echoseek.data.vectors import open_vectors, write_vectors
from echoseek.errors import InputError
from echoseek.index import open_index
from tests.datasets import ingested_stack, random_stack

PASSWD = Path("/etc/passwd")
UP = "../" * 16  # enough to climb from any tmp dir to /


def snapshot(top: Path) -> dict[str, str]:
    """Every entry under ``top``: file content digests and symlink targets."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(top))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def cli_refuses(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI: exit 2 and one stderr line containing ``match``; return that line."""
    capsys.readouterr()
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert match in err, err
    assert "Traceback" not in err
    return err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- index versions ---------------------------------------------------------------------


def version_dir(root: Path) -> Path:
    return root / (root / "LATEST").read_text().strip()


def edit_manifest(root: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = version_dir(root) / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


def index_refuses(
    root: Path, match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``open_index`` and ``echoseek index eval`` both refuse ``root``; nothing changes."""
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as info:
        open_index(root)
    assert match in str(info.value), str(info.value)
    out = tmp_path / "eval-out"
    cli_refuses(["index", "eval", f"input={root}", f"output={out}", "n_queries=5"], match, capsys)
    assert not out.exists()
    assert snapshot(tmp_path) == before


def set_entry(manifest: dict[str, Any], entry: str, value: str, digest: str) -> None:
    """Point manifest entry ``shards[0].file`` / ``shards[0].metadata`` / ``trained`` ..."""
    if entry == "trained":
        manifest["trained"] = {"file": value, "sha256": digest}
    elif entry == "file":
        manifest["shards"][0].update(file=value, sha256=digest)
    else:
        manifest["shards"][0][entry] = {"file": value, "sha256": digest}


ENTRY_NAMES = {
    "file": "shards[0].file",
    "vectors": "shards[0].vectors.file",
    "metadata": "shards[0].metadata.file",
    "trained": "trained.file",
}


@pytest.mark.parametrize("entry", list(ENTRY_NAMES))
def test_manifest_entry_climbing_out_is_refused(
    entry: str, index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``../../outside/stolen.faiss`` with a matching sha256 (it opened and searched)."""
    source = {"file": "shard-00001.faiss", "trained": "trained.faiss"}.get(
        entry, f"shard-00001.{'vectors.npy' if entry == 'vectors' else 'meta.parquet'}"
    )
    (tmp_path / "outside").mkdir()
    stolen = tmp_path / "outside" / "stolen"
    shutil.copy(version_dir(index_copy) / source, stolen)
    path = edit_manifest(
        index_copy, lambda m: set_entry(m, entry, "../../outside/stolen", sha(stolen))
    )
    index_refuses(
        index_copy,
        f"{path} {ENTRY_NAMES[entry]}: '../../outside/stolen' leads outside",
        tmp_path,
        capsys,
    )


def test_manifest_entry_reaching_etc_passwd_is_refused(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``../../../../etc/passwd`` with its own sha256 passed the checksum and was read."""
    name = UP + "etc/passwd"
    path = edit_manifest(index_copy, lambda m: set_entry(m, "file", name, sha(PASSWD)))
    index_refuses(index_copy, f"{path} shards[0].file: {name!r} leads outside", tmp_path, capsys)


def test_manifest_absolute_metadata_path_is_refused(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = edit_manifest(index_copy, lambda m: set_entry(m, "metadata", str(PASSWD), sha(PASSWD)))
    index_refuses(
        index_copy,
        f"{path} shards[0].metadata.file: '/etc/passwd' is an absolute path",
        tmp_path,
        capsys,
    )


def test_manifest_entry_in_a_subdirectory_is_refused(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = version_dir(index_copy)
    (version / "sub").mkdir()
    shutil.copy(version / "shard-00000.faiss", version / "sub" / "s.faiss")
    digest = sha(version / "sub" / "s.faiss")
    path = edit_manifest(index_copy, lambda m: set_entry(m, "file", "sub/s.faiss", digest))
    index_refuses(
        index_copy,
        f"{path} shards[0].file: 'sub/s.faiss' is not a plain file name",
        tmp_path,
        capsys,
    )


def test_symlinked_shard_file_leading_outside_is_refused(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same bytes, same checksum, but the file lives outside the version."""
    version = version_dir(index_copy)
    outside = tmp_path / "outside.npy"
    shutil.move(version / "shard-00000.vectors.npy", outside)
    (version / "shard-00000.vectors.npy").symlink_to(outside)
    where = f"{version / 'manifest.json'} shards[0].vectors.file"
    index_refuses(index_copy, f"{where}: 'shard-00000.vectors.npy' leads outside", tmp_path, capsys)


def test_latest_naming_another_roots_version_is_refused(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other_root"
    shutil.copytree(index_copy, other)
    version = version_dir(other).name
    (index_copy / "LATEST").write_text(f"../other_root/{version}\n")
    where = f"{index_copy / 'LATEST'} entry"
    index_refuses(index_copy, f"{where}: '../other_root/{version}' leads outside", tmp_path, capsys)


def test_latest_naming_a_nested_directory_is_refused(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = version_dir(index_copy)
    shutil.copytree(version, index_copy / "nested" / version.name)
    (index_copy / "LATEST").write_text(f"nested/{version.name}\n")
    index_refuses(index_copy, "is not a version directory directly under", tmp_path, capsys)


def test_latest_naming_a_symlinked_version_outside_is_refused(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other_root"
    shutil.copytree(index_copy, other)
    fake = "v20990101T000000000000-abcdef"
    (index_copy / fake).symlink_to(version_dir(other))
    (index_copy / "LATEST").write_text(f"{fake}\n")
    index_refuses(
        index_copy, f"{index_copy / 'LATEST'} entry: '{fake}' leads outside", tmp_path, capsys
    )


def _shard(i: int, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["shards"][i].update(fields)


def _top(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m.update(fields)


def _set_dim(dim: int) -> Callable[[dict[str, Any]], None]:
    """``dim`` and ``params.dim`` edited alike: only the files disagree."""

    def change(m: dict[str, Any]) -> None:
        m["dim"] = m["params"]["dim"] = dim

    return change


def _grow_last_shard(m: dict[str, Any]) -> None:
    """count + 1 with ntotal, live and next_id kept consistent: only the files disagree."""
    m["shards"][-1]["count"] += 1
    for key in ("ntotal", "live", "next_id"):
        m[key] += 1


def _shift_last_shard(m: dict[str, Any]) -> None:
    m["shards"][-1]["id_start"] += 5
    m["next_id"] += 5


MANIFEST_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("dim-edited", _top(dim=33), "'params.dim' is 32, not 'dim' 33"),
    ("dim-vs-files", _set_dim(33), "shards[0] is an index of dim 32 but 'dim' is 33"),
    ("dim-string", _top(dim="32"), "'dim' must be an integer >= 1, got '32'"),
    ("dim-zero", _top(dim=0), "'dim' must be an integer >= 1, got 0"),
    ("metric", _top(metric="cosine"), "'metric' must be 'ip' or 'l2', got 'cosine'"),
    ("normalize", _top(normalize="yes"), "'normalize' must be a bool"),
    ("nprobe", _top(default_nprobe="8"), "'default_nprobe' must be an integer >= 1"),
    ("rerank", _top(default_rerank=3), "'default_rerank' must be a distance name"),
    ("rerank-name", _top(default_rerank="nope"), "'default_rerank': distance: unknown name"),
    ("params-string", _top(params="ivfpq"), "'params' must be an object with kind"),
    ("params-no-kind", lambda m: m["params"].pop("kind"), "'params' must be an object with kind"),
    ("params-dim", lambda m: m["params"].update(dim=8), "'params.dim' is 8, not 'dim' 32"),
    ("count-999999", _shard(0, count=999_999), "shards[0] ends at id 999999 (id_start + count)"),
    ("count-last", _shard(2, count=999_999), "'ntotal' is 20000 but the shards' counts add up"),
    ("count-vs-files", _grow_last_shard, "shards[2].count is 6668 but the shard holds 6667"),
    ("count-string", _shard(0, count="6666"), "'shards[0].count' must be an integer >= 0"),
    ("id-start-overlap", _shard(1, id_start=6000), "but shards[1].id_start is 6000"),
    ("id-start-vs-files", _shift_last_shard, "shards[2].id_start is 13338 but the shard stores"),
    ("id-start-negative", _shard(0, id_start=-1), "'shards[0].id_start' must be an integer >= 0"),
    ("id-start-huge", _shard(2, id_start=2**70), "'shards[2].id_start' must be an integer"),
    ("next-id", _top(next_id=5), "'next_id' must be an integer >= 20000, got 5"),
    ("ntotal", _top(ntotal="20000"), "'ntotal' is '20000'"),
    ("live", _top(live=999), "'live' is 999 but ntotal - tombstones is 20000"),
    ("tombstones-string", _top(tombstones="5"), "'tombstones' must be a list of internal ids"),
    ("tombstones-float", _top(tombstones=[1.5]), "'tombstones' must be a list of internal ids"),
    ("tombstones-bool", _top(tombstones=[True]), "'tombstones' must be a list of internal ids"),
    ("tombstones-unknown", _top(tombstones=[10**12]), "'tombstones' id 1000000000000 is not"),
    ("tombstones-negative", _top(tombstones=[-3]), "'tombstones' id -3 is not stored"),
    ("tombstones-twice", _top(tombstones=[3, 3]), "'tombstones' lists an id twice"),
    ("shards-string", _top(shards="shard-00000.faiss"), "'shards' must be a list"),
    ("shard-entry", _top(shards=[5]), "'shards[0]' must be an object"),
    ("shard-sha", _shard(0, sha256=123), "'shards[0].sha256' must be a hex digest string"),
    ("shard-file-type", _shard(0, file=["x"]), "shards[0].file: expected a file name"),
    ("trained-string", _top(trained="trained.faiss"), "'trained' must be an object"),
    ("version", _top(version=7), "'version' must be a non-empty string, got 7"),
]


@pytest.mark.parametrize(
    "change,message", [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES]
)
def test_edited_manifest_field_is_named(
    change: Callable[[dict[str, Any]], None],
    message: str,
    index_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = edit_manifest(index_copy, change)
    index_refuses(index_copy, str(path), tmp_path, capsys)
    with pytest.raises(InputError, match=r"manifest\.json") as info:
        open_index(index_copy)
    assert message in str(info.value)


def test_untouched_index_still_opens(index_copy: Path) -> None:
    with open_index(index_copy) as reader:
        assert reader.ntotal == 20_000
        assert reader.lookup([0])[0]["internal_id"] == 0


# --- datasets -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 labelled 8x8 frames in 3 shards (read-only; tests work on copies)."""
    tmp = tmp_path_factory.mktemp("dataset")
    return ingested_stack(tmp, random_stack(8, 8, 12), labelled=12, shard_size=4)


@pytest.fixture
def ds(dataset: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "art" / "ds"
    shutil.copytree(dataset, dst)
    return dst


def edit_descriptor(ds: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = ds / "dataset.json"
    desc = json.loads(path.read_text())
    change(desc)
    path.write_text(json.dumps(desc))
    return path


def dataset_refuses(
    ds: Path, match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``shard_paths``/``iter_batches``, ``echoseek evaluate`` and ``echoseek embed`` refuse
    ``ds`` with ``match``; nothing changes on disk."""
    before = snapshot(tmp_path)
    for read in (shard_paths, lambda p: list(iter_batches(p))):
        with pytest.raises(InputError) as info:
            read(ds)
        assert match in str(info.value), str(info.value)
    for job in ("evaluate", "embed"):
        out = tmp_path / f"{job}-out"
        cli_refuses([job, f"input={ds}", f"output={out}"], match, capsys)
        assert not out.exists()
    assert snapshot(tmp_path) == before


def _point_shard(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["shards"][0].update(file=name)


def test_dataset_shard_climbing_out_is_refused(
    ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shard named ``../../etc/passwd`` was opened as Parquet."""
    name = UP + "etc/passwd"
    path = edit_descriptor(ds, _point_shard(name))
    dataset_refuses(ds, f"{path} shards[0].file: {name!r} leads outside", tmp_path, capsys)


def test_dataset_shard_outside_with_matching_checksum_is_refused(
    ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.move(ds / "part-00000.parquet", tmp_path / "art" / "part.parquet")
    path = edit_descriptor(ds, _point_shard("../part.parquet"))
    dataset_refuses(ds, f"{path} shards[0].file: '../part.parquet' leads outside", tmp_path, capsys)


def test_dataset_absolute_shard_path_is_refused(
    ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = edit_descriptor(ds, _point_shard(str(ds / "part-00000.parquet")))
    dataset_refuses(ds, f"{path} shards[0].file: ", tmp_path, capsys)


def test_dataset_symlinked_shard_leading_outside_is_refused(
    ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "art" / "elsewhere.parquet"
    shutil.move(ds / "part-00001.parquet", outside)
    (ds / "part-00001.parquet").symlink_to(outside)
    where = f"{ds / 'dataset.json'} shards[1].file"
    dataset_refuses(ds, f"{where}: 'part-00001.parquet' leads outside", tmp_path, capsys)


def test_dataset_shard_symlink_loop_is_refused(
    ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (ds / "part-00000.parquet").unlink()
    (ds / "part-00000.parquet").symlink_to(ds / "loop")
    (ds / "loop").symlink_to(ds / "part-00000.parquet")
    where = f"{ds / 'dataset.json'} shards[0].file"
    dataset_refuses(ds, f"{where}: 'part-00000.parquet' cannot be resolved", tmp_path, capsys)


def test_flipped_byte_in_a_dataset_shard_is_one_error(
    ds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError traceback from evaluate and a RayTaskError from embed before."""
    shard = ds / "part-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    match = f"{shard}: checksum mismatch with dataset.json"
    dataset_refuses(ds, match, tmp_path, capsys)
    out = tmp_path / "model"  # training: refused on the driver, before Ray Data reads a row
    before = snapshot(tmp_path)
    cli_refuses(["pretrain", f"input={ds}", f"output={out}", "batch_size=4"], match, capsys)
    assert snapshot(tmp_path) == before


def test_shard_changed_after_a_verified_read_is_caught(ds: Path) -> None:
    assert len(shard_paths(ds)) == 3  # verified (and remembered) once
    shard = ds / "part-00002.parquet"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0x01
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(1, 1))  # a new mtime: the remembered check no longer applies
    with pytest.raises(InputError, match=r"part-00002\.parquet: checksum mismatch"):
        shard_paths(ds)


DESCRIPTOR_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no-shards", lambda d: d.pop("shards"), "'shards' must be a non-empty list, got None"),
    ("shards-string", lambda d: d.update(shards="part-00000.parquet"), "'shards' must be a"),
    ("shards-empty", lambda d: d.update(shards=[]), "'shards' must be a non-empty list"),
    ("shard-entry", lambda d: d.update(shards=["part-00000.parquet"]), "shards[0]: expected an"),
    ("rows-string", lambda d: d["shards"][0].update(rows="4"), "shards[0].rows: expected a row"),
    ("sha-missing", lambda d: d["shards"][2].pop("sha256"), "shards[2].sha256: expected a hex"),
    ("count", lambda d: d.update(count=999_999), "'count' is 999999 but the shards hold 12 rows"),
    ("sha-edited", lambda d: d["shards"][0].update(sha256="0" * 64), "'sha256' does not match"),
]


@pytest.mark.parametrize(
    "change,message", [c[1:] for c in DESCRIPTOR_CASES], ids=[c[0] for c in DESCRIPTOR_CASES]
)
def test_edited_dataset_descriptor_is_named(
    change: Callable[[dict[str, Any]], None],
    message: str,
    ds: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = edit_descriptor(ds, change)
    dataset_refuses(ds, f"{path}", tmp_path, capsys)
    with pytest.raises(InputError) as info:
        read_descriptor(ds)
    assert message in str(info.value), str(info.value)


def test_untouched_dataset_still_reads(ds: Path) -> None:
    assert sum(b.num_rows for b in iter_batches(ds)) == 12


# --- vectors ------------------------------------------------------------------------------


def test_vectors_file_climbing_out_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    vec = tmp_path / "vec"
    write_vectors(vec, [([str(i) for i in range(50)], x)], 4, "m")
    shutil.move(vec / "part-00000.parquet", tmp_path / "part.parquet")
    desc = json.loads((vec / "vectors.json").read_text())
    desc["files"][0]["file"] = "../part.parquet"
    (vec / "vectors.json").write_text(json.dumps(desc))
    match = f"{vec / 'vectors.json'} files[0].file: '../part.parquet' leads outside"
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="leads outside") as info:
        open_vectors(vec)
    assert match in str(info.value)
    root = tmp_path / "index"
    cli_refuses(
        ["index", "build", f"input={vec}", f"output={root}", "build.use_ray=false"], match, capsys
    )
    assert not root.exists()
    assert snapshot(tmp_path) == before
