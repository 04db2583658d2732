"""echoseek.object_store against a real S3-compatible server (moto, on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from echoseek import object_store as store
from echoseek.errors import ConfigError, InputError
from echoseek.storage import sha256_file


def test_files_round_trip_through_the_store(bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "blob.bin"
    local.write_bytes(bytes(range(256)) * 5000)
    target = store.join(bucket, "a", "blob.bin")
    assert store.join(bucket + "/", "x") == f"{bucket}/x"  # never s3:/ (Path folds //)
    store.upload(local, target)
    assert store.is_file(target) and not store.is_file(store.join(bucket, "a"))
    assert store.exists(store.join(bucket, "a"))
    assert store.sha256(target) == sha256_file(local)
    assert store.read_bytes(target) == local.read_bytes()
    with store.open_input(target) as f:  # ranged read
        f.seek(1000)
        assert f.read(3) == local.read_bytes()[1000:1003]
    with store.local_copy(target) as copy:
        assert copy.read_bytes() == local.read_bytes()
    assert not copy.exists()  # the node-local copy is removed after the block
    store.write_bytes(store.join(bucket, "a", "b", "c.txt"), b"hello")
    assert store.list_files(bucket) == ["a/b/c.txt", "a/blob.bin"]
    assert store.list_files(store.join(bucket, "a"), recursive=False) == ["blob.bin"]
    store.delete_tree(store.join(bucket, "a"))
    assert store.list_files(bucket) == []
    store.delete_tree(store.join(bucket, "nothing"))  # nothing there is not an error


def test_a_failed_write_leaves_nothing(bucket: str) -> None:
    target = store.join(bucket, "x.bin")
    with pytest.raises(RuntimeError, match="died"), store.writing(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("died")
    assert not store.exists(target) and not tmp.exists()
    with store.writing(target) as tmp:
        tmp.write_bytes(b"whole")
    assert store.read_bytes(target) == b"whole" and not tmp.exists()


@pytest.mark.parametrize("name", ["../other/x", "/etc/passwd", "", "a//b", "a/./b", 3])
def test_descriptor_names_stay_inside_the_artifact(bucket: str, name: object) -> None:
    with pytest.raises(InputError, match=r"manifest\.json files\[0\]"):
        store.member(store.join(bucket, "idx"), name, "manifest.json files[0]")
    assert store.member(store.join(bucket, "idx"), "d/x.faiss", "m") == f"{bucket}/idx/d/x.faiss"


def test_unopenable_locations_are_clear_errors(s3_server: str) -> None:
    with pytest.raises(ConfigError, match=r"output: foo://bucket: no installed filesystem"):
        store.check_location("foo://bucket/index", "output", output=True)
    with pytest.raises(ConfigError, match=r"input: s3:///vectors: no bucket"):
        store.check_location("s3:///vectors", "input")
    missing = "s3://echoseek-no-such-bucket/index"
    with pytest.raises(ConfigError, match="bucket 'echoseek-no-such-bucket' does not exist"):
        store.check_location(missing, "output", output=True)
    store.check_location("work/index", "output", output=True)  # local paths pass


def test_an_artifact_in_the_store_appears_whole_or_not_at_all(bucket: str) -> None:
    final = store.join(bucket, "vectors")

    def write(content: bytes, fail: bool = False) -> None:
        with store.staged_artifact(final, overwrite=True) as staged:
            store.write_bytes(store.join(staged.parts, "part-00000.parquet"), content)
            if fail:
                raise RuntimeError("embed died")
            store.write_bytes(store.join(staged.root, "vectors.json"), staged.prefix.encode())

    write(b"one")
    (first,) = [n for n in store.list_files(final) if n.endswith(".parquet")]
    assert store.read_bytes(store.join(final, "vectors.json")).decode() + "part-00000.parquet" == (
        first
    )
    with pytest.raises(RuntimeError, match="died"):
        write(b"two", fail=True)
    assert store.list_files(final) == sorted([first, "vectors.json"])  # the old one, whole
    write(b"three")
    (second,) = [n for n in store.list_files(final) if n.endswith(".parquet")]
    assert second != first and store.read_bytes(store.join(final, second)) == b"three"
    assert store.list_files(final) == sorted([second, "vectors.json"])  # old parts deleted
    with (
        pytest.raises(InputError, match="output exists and is not empty"),
        store.staged_artifact(final),
    ):
        pass
