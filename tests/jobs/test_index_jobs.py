"""`echoseek index build` and `echoseek index eval` end to end, in-process via the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from echoseek.cli import main as cli
from echoseek.index import list_versions, open_index, read_latest, read_manifest
from echoseek.jobs import index_build, index_eval


def _corpus(path: Path, n: int = 12_000, dim: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, dim))
    np.save(path, x.astype(np.float32))
    return path


@pytest.fixture(autouse=True)
def _one_faiss_thread() -> None:
    import faiss

    faiss.omp_set_num_threads(1)


def test_build_then_eval_then_tune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npy = _corpus(tmp_path / "x.npy")
    root = tmp_path / "index"
    build = [
        "index",
        "build",
        f"input={npy}",
        f"output={root}",
        "build.use_ray=false",
        "build.num_shards=2",
        "index.nlist=64",
        "index.train_size=3000",
    ]
    assert cli(build) == 0
    assert "indexed 12000 vectors (dim 16, IVF64,PQ4x8, 2 shards)" in capsys.readouterr().out
    version = read_latest(root)
    out = tmp_path / "eval"
    args = [f"input={root}", f"output={out}", "n_queries=100", "nprobes=[1,4,16]", "n_single=10"]
    assert cli(["index", "eval", *args, "target_recall=0.9"]) == 0
    text = capsys.readouterr().out
    assert "default nprobe set to" in text
    result = json.loads((out / "eval.json").read_text())
    assert result["version"] == version and len(result["rows"]) == 6
    tuned = result["published_version"]
    assert tuned in text and read_latest(root) == tuned != version
    assert read_manifest(root / tuned)["default_nprobe"] == result["tuned_nprobe"]


def test_build_summary_and_yaml_config(tmp_path: Path) -> None:
    npy = _corpus(tmp_path / "x.npy", n=800, dim=8)
    yaml = tmp_path / "c.yaml"
    yaml.write_text(f"input: {npy}\noutput: {tmp_path / 'idx'}\nbuild:\n  use_ray: false\n")
    cfg = index_build.Config(input=str(npy), output=str(tmp_path / "idx"))
    cfg.build.use_ray = False
    summary = index_build.run(cfg)
    assert summary["factory"] == "IDMap,Flat" and summary["ntotal"] == 800
    assert index_build.main([str(yaml), "build.retention=1"]) == 0
    assert len(list_versions(tmp_path / "idx")) == 1
    with open_index(tmp_path / "idx") as reader:
        assert reader.ntotal == 800


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "build", "output=x"], "input is required"),
        (
            ["index", "build", "input=/nonexistent.npy", "output=x"],
            "/nonexistent.npy: vector input not found",
        ),
        (["index", "build", "input=a.npy", "index.metric=cos"], "index.metric: must be one of"),
        (["index", "build", "input=a.npy", "build.num_shards=-1"], "build.num_shards"),
        (["index", "eval", "input=/nonexistent"], "/nonexistent: index path not found"),
        (["index", "eval", "input=x", "target_recall=2"], "target_recall"),
    ],
)
def test_user_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_input_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.ones((50, 4), np.float32)
    x[7, 3] = np.nan
    np.save(tmp_path / "nan.npy", x)
    argv = ["index", "build", f"input={tmp_path / 'nan.npy'}", f"output={tmp_path / 'i'}"]
    assert cli([*argv, "build.use_ray=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nan.npy: row 7 has a NaN or infinite value" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "i").exists() or list_versions(tmp_path / "i") == []


@pytest.mark.parametrize(
    ("field", "uri", "message"),
    [
        ("input", "foo://bucket/vectors", "input: foo://bucket: no installed filesystem"),
        ("output", "foo://bucket/index", "output: foo://bucket: no installed filesystem"),
        ("output", "s3://echoseek-absent/index", "bucket 'echoseek-absent' does not exist"),
    ],
)
def test_an_unopenable_uri_is_a_clear_error_not_a_folder(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    s3_server: str,
    field: str,
    uri: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    paths = {"input": "x.npy", "output": "i", field: uri}
    np.save(tmp_path / "x.npy", np.ones((50, 4), np.float32))
    assert cli(["index", "build", f"input={paths['input']}", f"output={paths['output']}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]  # no folder named s3:


def test_rerank_option_words() -> None:
    assert index_eval.rerank_option("auto") is True
    assert index_eval.rerank_option(False) is False
    assert index_eval.rerank_option("none") is False
    assert index_eval.rerank_option("soart3_gamma") == "soart3_gamma"


@pytest.mark.slow
def test_build_on_ray_via_cli(ray_session: Any, tmp_path: Path) -> None:
    npy = _corpus(tmp_path / "x.npy")
    root = tmp_path / "index"
    argv = ["index", "build", f"input={npy}", f"output={root}", "build.num_shards=3"]
    assert cli([*argv, "index.nlist=64", "index.train_size=3000"]) == 0
    with open_index(root) as reader:
        assert reader.ntotal == 12_000 and len(reader.manifest["shards"]) == 3


def test_add_then_delete_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """index add keeps the trained quantizer; index delete hides ids; old versions stay."""
    root = tmp_path / "index"
    base = _corpus(tmp_path / "x.npy", n=12_000)
    build = ["build.use_ray=false", "index.nlist=64", "index.train_size=3000"]
    assert cli(["index", "build", f"input={base}", f"output={root}", *build]) == 0
    first = read_latest(root)
    extra = _corpus(tmp_path / "y.npy", n=500, seed=1)
    assert cli(["index", "add", f"input={extra}", f"output={root}", "num_shards=2"]) == 0
    added = read_manifest(root / read_latest(root))
    assert added["parent"] == first and added["ntotal"] == 12_500 and len(added["shards"]) == 3
    assert added["trained"] == read_manifest(root / first)["trained"]  # no retraining

    new_vectors = np.load(extra)
    with open_index(root) as reader:
        _, ids = reader.search(new_vectors[:5], 1, nprobe=64, rerank=True)
    assert ids[:, 0].tolist() == list(range(12_000, 12_005))  # found as their new ids

    (tmp_path / "ids.txt").write_text("12000\n\n12001\n")
    assert (
        cli(
            [
                "index",
                "delete",
                f"input={tmp_path / 'ids.txt'}",
                f"output={root}",
            ]
        )
        == 0
    )
    assert "2 id(s) deleted" in capsys.readouterr().out
    with open_index(root) as reader:
        _, ids = reader.search(new_vectors[:2], 10, nprobe=64, rerank=True)
        assert not np.isin(ids, [12_000, 12_001]).any()
        assert reader.live == 12_498
    assert len(list_versions(root)) == 3


def test_update_jobs_reject_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "index"
    assert (
        cli(
            [
                "index",
                "build",
                f"input={_corpus(tmp_path / 'x.npy', n=300)}",
                f"output={root}",
                "build.use_ray=false",
            ]
        )
        == 0
    )
    before = list_versions(root)
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3), dtype=np.float32))
    capsys.readouterr()
    assert cli(["index", "add", f"input={tmp_path / 'wrong.npy'}", f"output={root}"]) == 2
    assert "dim 3 but the index has dim 16" in capsys.readouterr().err
    assert cli(["index", "delete", f"output={root}", "ids=[no-such-id]"]) == 2
    assert "no-such-id" in capsys.readouterr().err
    assert cli(["index", "delete", f"output={root}"]) == 2
    assert "no ids to delete" in capsys.readouterr().err
    assert list_versions(root) == before  # nothing published by the failures
