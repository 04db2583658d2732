"""``index build`` from and to an object store (a real S3-compatible server on 127.0.0.1):
the same version as a build on a filesystem, published by order, nothing left by a failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from echoseek import object_store as store
from echoseek.data.vectors import write_vectors
from echoseek.index import build as build_module
from echoseek.index import build_index, list_versions, open_index, read_latest
from echoseek.index.build import array_batches
from echoseek.index.publish import new_version_id
from tests.index_fixtures import small_params

pytestmark = pytest.mark.slow


def upload_tree(local: Path, target: str) -> str:
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        store.upload(path, store.join(target, path.relative_to(local).as_posix()))
    return target


@pytest.fixture
def vectors(corpus: np.ndarray, tmp_path: Path) -> Path:
    """The session corpus as a vectors artifact (Parquet parts of 1,000 rows, string ids)."""
    ids = [f"v{i:05d}" for i in range(len(corpus))]
    batches = array_batches(corpus, ids, batch_size=512)
    write_vectors(tmp_path / "vectors", batches, corpus.shape[1], "pixels", rows_per_file=1000)
    return tmp_path / "vectors"


def shard_files(manifest: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (s["file"], s["sha256"], s["vectors"]["sha256"], s["metadata"]["sha256"])
        for s in manifest["shards"]
    ]


def test_a_build_from_and_to_the_store_is_the_local_build(
    bucket: str, vectors: Path, corpus: np.ndarray, tmp_path: Path, ray_session: object
) -> None:
    source = upload_tree(vectors, store.join(bucket, "vectors"))
    root = store.join(bucket, "index")
    kwargs: dict[str, Any] = {"num_shards": 3, "seed": 0, "calibration_queries": 100}
    local = build_index(vectors, tmp_path / "index", small_params(), **kwargs)
    remote = build_index(source, root, small_params(), **kwargs)

    version = remote["version"]
    assert read_latest(root) == version and list_versions(root) == [version]
    assert shard_files(remote) == shard_files(local) and remote["trained"] == local["trained"]
    assert remote["vectors_sha256"] == local["vectors_sha256"] != ""
    assert remote["default_nprobe"] == local["default_nprobe"]
    for key in ("recall@10", "nprobe", "n_queries"):
        assert remote["build"]["calibration"][key] == local["build"]["calibration"][key]
    listed = {s[k]["file"] for s in remote["shards"] for k in ("vectors", "metadata")}
    names = {"manifest.json", "trained.faiss", *(s["file"] for s in remote["shards"]), *listed}
    assert store.list_files(root) == sorted(["LATEST", *(f"{version}/{n}" for n in names)])

    copy = store.download_tree(store.join(root, version), tmp_path / "copy")
    queries = corpus[:20] + 0.01
    with open_index(copy) as got, open_index(tmp_path / "index") as want:
        for a, b in zip(got.search(queries, 10), want.search(queries, 10), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_failed_build_in_the_store_publishes_nothing(
    bucket: str, vectors: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = upload_tree(vectors, store.join(bucket, "vectors"))
    root = store.join(bucket, "index")
    params = small_params()
    first = build_index(source, root, params, num_shards=2, use_ray=False)["version"]
    before = store.list_files(root)

    def calibration_dies(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("node lost while calibrating")

    with monkeypatch.context() as patch:
        patch.setattr(build_module, "calibrate", calibration_dies)
        with pytest.raises(RuntimeError, match="node lost"):
            build_index(source, root, params, num_shards=2, use_ray=False)
    assert store.list_files(root) == before and read_latest(root) == first

    # a killed build's version prefix (no manifest) goes once it is a day old; a fresh one stays
    dead, fresh = "v20200101T000000000000-abcdef", new_version_id()
    for name in (dead, fresh):
        store.write_bytes(store.join(root, name, "shard-00000.faiss"), b"partial")
    last = build_index(source, root, params, num_shards=2, use_ray=False, retention=1)
    assert list_versions(root) == [last["version"]] and read_latest(root) == last["version"]
    prefixes = {name.split("/")[0] for name in store.list_files(root)}
    assert prefixes == {"LATEST", last["version"], fresh}
