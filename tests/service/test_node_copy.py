"""Node-local copies of served shards (``node_cache``), from a mounted root and from an index
root in a real S3-compatible store, behind a real uvicorn server and HTTP client."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from echoseek import object_store as store
from echoseek.errors import InputError
from echoseek.index.manifest import listed_files, read_manifest
from echoseek.index.publish import read_latest
from echoseek.index.update import add_vectors
from echoseek.service.config import ServiceConfig
from echoseek.service.node_copy import copy_version, prune
from tests.index.test_object_store_build import upload_tree
from tests.service.conftest import PIXELS
from tests.service.test_http import serve_local


def test_replicas_on_one_node_copy_each_file_once(service_index: Path, tmp_path: Path) -> None:
    version = read_latest(service_index)
    manifest = read_manifest(service_index / version)
    cache = tmp_path / "cache"
    copied: list[Path] = []
    errors: list[BaseException] = []

    def replica(shards: list[int]) -> None:
        try:
            copied.append(copy_version(service_index / version, manifest, shards, cache))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=([i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and set(copied) == {cache / version}
    names = {"manifest.json", *(n for n, _ in listed_files(manifest))}
    assert {p.name for p in (cache / version).iterdir() if not p.name.startswith(".")} == names
    for name, _ in listed_files(manifest):
        assert (cache / version / name).read_bytes() == (
            service_index / version / name
        ).read_bytes()


def test_a_corrupt_source_leaves_no_copy(index_root_copy: Path, tmp_path: Path) -> None:
    version = read_latest(index_root_copy)
    manifest = read_manifest(index_root_copy / version)
    shard = index_root_copy / version / "shard-00001.faiss"
    shard.write_bytes(shard.read_bytes()[:-8] + b"\0" * 8)
    cache = tmp_path / "cache"
    copy_version(index_root_copy / version, manifest, [0], cache)  # shard 0 is sound
    with pytest.raises(InputError, match=r"shard-00001\.faiss: checksum mismatch"):
        copy_version(index_root_copy / version, manifest, [1], cache)
    assert not (cache / version / "shard-00001.faiss").exists()
    assert not [p for p in (cache / version).iterdir() if p.name.endswith(".tmp")]


def test_prune_keeps_the_newest_and_those_in_use(tmp_path: Path) -> None:
    versions = [f"v2026120{d}T000000000000-abcdef" for d in range(1, 6)]
    for v in versions:
        (tmp_path / v).mkdir()
    (tmp_path / "not-a-version").mkdir()
    assert prune(tmp_path, in_use=[versions[0]], keep=2) == versions[1:3]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([versions[0], *versions[3:], "not-a-version"])


def test_a_service_over_an_index_in_an_object_store(
    index_root_copy: Path, bucket: str, tmp_path: Path
) -> None:
    """Searchers copy the shards from the store to the node cache, answer as the same
    service over the mounted root does, swap to a new version and refuse a corrupt one."""
    root = upload_tree(index_root_copy, store.join(bucket, "index"))
    cache = tmp_path / "cache"
    feedback = str(tmp_path / "feedback.jsonl")
    remote = ServiceConfig(index=root, node_cache=str(cache), feedback=feedback, pixel_size=PIXELS)
    mounted = ServiceConfig(index=str(index_root_copy), pixel_size=PIXELS)
    query = {"vector": list(np.linspace(-1, 1, 64)), "k": 5}
    servers = [serve_local(remote), serve_local(mounted)]
    try:
        got, want = (httpx.post(f"{s.url}/v1/search", json=query).json() for s in servers)
        assert got["results"] == want["results"] and got["index_version"] == want["index_version"]
        old = got["index_version"]
        assert sorted(p.name for p in cache.iterdir()) == [old]

        add_vectors(
            index_root_copy, np.ones((10, 64), np.float32), ids=[f"b:{i}" for i in range(10)]
        )
        new = read_latest(index_root_copy)
        upload_tree(index_root_copy / new, store.join(root, new))
        store.write_bytes(store.join(root, "LATEST"), f"{new}\n".encode())
        doc = httpx.post(f"{servers[0].url}/v1/admin/index", json={"version": "latest"}).json()
        assert doc["version"] == new and doc["ntotal"] == 70
        assert sorted(p.name for p in cache.iterdir()) == sorted([old, new])

        # a new version with a corrupt file in the store: refused, no copy of that file stays
        add_vectors(index_root_copy, np.ones((5, 64), np.float32), ids=[f"c:{i}" for i in range(5)])
        bad = read_latest(index_root_copy)
        upload_tree(index_root_copy / bad, store.join(root, bad))
        shard = store.join(root, bad, "shard-00000.faiss")
        store.write_bytes(shard, store.read_bytes(shard)[:-8] + b"\0" * 8)
        answer = httpx.post(f"{servers[0].url}/v1/admin/index", json={"version": bad})
        assert answer.status_code == 409 and "shard-00000.faiss: checksum mismatch" in answer.text
        assert not (cache / bad / "shard-00000.faiss").exists()
        assert httpx.get(f"{servers[0].url}/v1/index").json()["version"] == new
    finally:
        for s in servers:
            s.stop()


def test_an_index_in_an_object_store_needs_a_feedback_file(bucket: str) -> None:
    from echoseek.errors import ConfigError

    with pytest.raises(ConfigError, match="feedback: the index s3://"):
        ServiceConfig(index=f"{bucket}/index").check()
