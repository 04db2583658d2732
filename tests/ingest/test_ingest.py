"""Ingest: .mat v5/v7.3 stacks, image folders, labels CSV, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io
from PIL import Image

from echoseek.cli import main as cli
from echoseek.data.dataset import decode_png, iter_batches, read_descriptor
from echoseek.errors import EchoseekError
from echoseek.jobs.ingest import Config, run


def write_v73(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB 7.3 file: HDF5 with a 512-byte MATLAB header, arrays stored column-major."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=np.ascontiguousarray(array.T), chunks=True)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def rows(path: Path) -> list[dict]:
    return [r for b in iter_batches(path) for r in b.to_pylist()]


def stack(n: int = 12, h: int = 20, w: int = 20, dtype: type = np.uint8, seed: int = 0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, size=(h, w, n), dtype=np.uint8)
    return (rng.random((h, w, n)) * 3000 + 100).astype(dtype)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_v5_uint8_round_trip_is_exact(tmp_path: Path) -> None:
    frames = stack()
    scipy.io.savemat(tmp_path / "d.mat", {"frames": frames}, do_compression=True)
    labels = write_csv(
        tmp_path / "l.csv", "frame_index,label\n" + "".join(f"{i},{i % 3}\n" for i in range(12))
    )
    desc = run(
        Config(
            input=str(tmp_path / "d.mat"),
            labels=str(labels),
            output=str(tmp_path / "o"),
            shard_size=5,
        )
    )
    got = rows(tmp_path / "o")
    assert desc["count"] == 12 and len(desc["shards"]) == 3
    assert desc["label_counts"] == {"0": 4, "1": 4, "2": 4}
    assert desc["source"]["version"] == "v5" and desc["source"]["frame_axis"] == 2
    for i, r in enumerate(got):
        np.testing.assert_array_equal(decode_png(r["image"]), frames[:, :, i])
        assert (r["frame_index"], r["label"], r["id"]) == (i, i % 3, f"d:{i:06d}")
        assert (r["height"], r["width"], r["channels"]) == (20, 20, 1)


def test_v73_uint16_streams_chunks_and_applies_global_range_rule(tmp_path: Path) -> None:
    frames = stack(n=9, h=16, w=24, dtype=np.uint16)  # all axes distinct: last axis = frames
    write_v73(tmp_path / "d.mat", {"cine": frames, "meta": np.ones((3, 2))})
    run(Config(input=str(tmp_path / "d.mat"), output=str(tmp_path / "o"), chunk_frames=4))
    desc = read_descriptor(tmp_path / "o")
    lo, hi = float(frames.min()), float(frames.max())
    assert desc["source"] | {} and desc["source"]["version"] == "v7.3"
    assert desc["source"]["conversion"]["lo"] == lo and desc["source"]["conversion"]["hi"] == hi
    expected = np.rint((frames.astype(np.float64) - lo) * 255 / (hi - lo)).astype(np.uint8)
    got = rows(tmp_path / "o")
    assert len(got) == 9
    for i, r in enumerate(got):
        np.testing.assert_array_equal(decode_png(r["image"]), expected[:, :, i])


def test_v73_and_v5_give_identical_datasets(tmp_path: Path) -> None:
    frames = stack(n=7)
    scipy.io.savemat(tmp_path / "a.mat", {"frames": frames})
    write_v73(tmp_path / "b.mat", {"frames": frames})
    run(Config(input=str(tmp_path / "a.mat"), output=str(tmp_path / "a")))
    run(Config(input=str(tmp_path / "b.mat"), output=str(tmp_path / "b")))
    images_a = [r["image"] for r in rows(tmp_path / "a")]
    images_b = [r["image"] for r in rows(tmp_path / "b")]
    assert images_a == images_b


@pytest.mark.parametrize(
    "shape,axis,given",
    [((45, 16, 16), 0, None), ((16, 9, 16), 2, None), ((8, 16, 24), 2, None), ((16, 9, 16), 1, 1)],
)
def test_frame_axis_conventions(tmp_path: Path, shape: tuple, axis: int, given: int | None) -> None:
    frames = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    scipy.io.savemat(tmp_path / "d.mat", {"x": frames})
    cfg = Config(input=str(tmp_path / "d.mat"), output=str(tmp_path / "o"), frame_axis=given)
    desc = run(cfg)
    assert desc["source"]["frame_axis"] == axis
    assert desc["count"] == shape[axis]


def test_float_frames_and_explicit_axis(tmp_path: Path) -> None:
    frames = np.linspace(-1, 1, 8 * 8 * 8).reshape(8, 8, 8)
    scipy.io.savemat(tmp_path / "d.mat", {"x": frames})
    assert cli(["ingest", f"input={tmp_path / 'd.mat'}", f"output={tmp_path / 'o'}"]) == 2
    desc = run(Config(input=str(tmp_path / "d.mat"), output=str(tmp_path / "o"), frame_axis=0))
    first = decode_png(rows(tmp_path / "o")[0]["image"])
    np.testing.assert_array_equal(first, np.rint((frames[0] + 1) * 127.5).astype(np.uint8))
    assert desc["count"] == 8


def make_folder(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    images = {
        "cracks/a.png": rng.integers(0, 256, (10, 12), dtype=np.uint8),
        "cracks/deep/b.bmp": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        "roots/c.tif": rng.integers(0, 256, (9, 7), dtype=np.uint8),
        "roots/d.PNG": rng.integers(0, 256, (6, 6, 3), dtype=np.uint8),
    }
    for rel, array in images.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / rel)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"junk")
    return images


def test_folder_recursive_with_class_labels_round_trip(tmp_path: Path) -> None:
    images = make_folder(tmp_path / "in")
    desc = run(
        Config(input=str(tmp_path / "in"), output=str(tmp_path / "o"), labels_from_folders=True)
    )
    got = {r["id"]: r for r in rows(tmp_path / "o")}
    assert sorted(got) == sorted(images)
    assert desc["classes"] == ["cracks", "roots"]
    assert desc["source"]["skipped_files"] == 1
    for rel, array in images.items():
        np.testing.assert_array_equal(decode_png(got[rel]["image"]), array)
        assert got[rel]["label"] == (0 if rel.startswith("cracks") else 1)
        assert got[rel]["channels"] == (3 if array.ndim == 3 else 1)


def test_folder_16bit_png_uses_the_conversion_rule(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    raw = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    Image.fromarray(raw).save(tmp_path / "in" / "x.png")
    run(Config(input=str(tmp_path / "in"), output=str(tmp_path / "o"), channels=3))
    out = decode_png(rows(tmp_path / "o")[0]["image"])
    expected = np.rint((raw.astype(np.float64) - 1000) * 255 / 4000).astype(np.uint8)
    np.testing.assert_array_equal(out, np.repeat(expected[:, :, None], 3, axis=2))


def test_folder_labels_csv_by_name_stem_and_path(tmp_path: Path) -> None:
    make_folder(tmp_path / "in")
    csv = write_csv(tmp_path / "l.csv", "file,label\na.png,1\nb,0\nroots/c.tif,1\n")
    desc = run(Config(input=str(tmp_path / "in"), output=str(tmp_path / "o"), labels=str(csv)))
    got = {r["id"]: r["label"] for r in rows(tmp_path / "o")}
    assert got == {"cracks/a.png": 1, "cracks/deep/b.bmp": 0, "roots/c.tif": 1, "roots/d.PNG": None}
    assert desc["missing_labels"] == 1 and desc["labelled"] == 3


def test_csv_without_header_and_one_based_index(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "d.mat", {"frames": stack(n=4)})
    csv = write_csv(tmp_path / "l.csv", "1,0\n2,1\n3,1\n4,0\n")
    run(
        Config(
            input=str(tmp_path / "d.mat"),
            labels=str(csv),
            labels_index_base=1,
            output=str(tmp_path / "o"),
        )
    )
    assert [r["label"] for r in rows(tmp_path / "o")] == [0, 1, 1, 0]


def test_sha256_changes_with_labels(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "d.mat", {"frames": stack(n=4)})
    a = write_csv(tmp_path / "a.csv", "frame_index,label\n0,1\n1,0\n2,0\n3,0\n")
    b = write_csv(tmp_path / "b.csv", "frame_index,label\n0,0\n1,0\n2,0\n3,1\n")
    da = run(Config(input=str(tmp_path / "d.mat"), labels=str(a), output=str(tmp_path / "a")))
    db = run(Config(input=str(tmp_path / "d.mat"), labels=str(b), output=str(tmp_path / "b")))
    assert da["sha256"] != db["sha256"]
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["sha256"] == da["sha256"]
    assert pq.read_table(tmp_path / "a" / "part-00000.parquet").num_rows == 4


# --- bad input: one clear line, exit code 2, nothing left behind ----------------------------


def bad_mat_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = tmp / "good.mat"
    scipy.io.savemat(good, {"frames": stack(n=30, h=40, w=40)}, do_compression=True)
    data = good.read_bytes()
    (tmp / "trunc.mat").write_bytes(data[: len(data) // 2])
    write_v73(tmp / "v73.mat", {"frames": stack(n=30, h=40, w=40)})
    v73 = (tmp / "v73.mat").read_bytes()
    (tmp / "trunc73.mat").write_bytes(v73[: len(v73) // 3])
    (tmp / "text.mat").write_text("hello, not a mat file at all" * 20)
    scipy.io.savemat(tmp / "empty.mat", {"frames": np.zeros((16, 16, 0), dtype=np.uint8)})
    scipy.io.savemat(tmp / "two.mat", {"a": stack(n=3), "b": stack(n=4)})
    scipy.io.savemat(tmp / "flat.mat", {"a": np.zeros((4, 4))})
    return {
        "truncated v5": ([f"input={tmp / 'trunc.mat'}"], "corrupt or truncated"),
        "truncated v7.3": ([f"input={tmp / 'trunc73.mat'}"], "corrupt or truncated"),
        "not a mat": ([f"input={tmp / 'text.mat'}"], "not a MATLAB"),
        "wrong variable": ([f"input={good}", "variable=cine"], "no variable 'cine'"),
        "zero frames": ([f"input={tmp / 'empty.mat'}"], "0 frames"),
        "ambiguous variable": ([f"input={tmp / 'two.mat'}"], "several 3-D variables"),
        "2-D only": ([f"input={tmp / 'flat.mat'}"], "no 3-D frame stack"),
        "missing input": ([f"input={tmp / 'nope.mat'}"], "not found"),
        "bad override": ([f"input={good}", "shard_size=many"], "expected an integer"),
        "unknown field": ([f"input={good}", "chunk=3"], "unknown config field 'chunk'"),
    }


def assert_failed_cleanly(capsys: pytest.CaptureFixture[str], out: Path, expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert expected in err and "Traceback" not in err
    assert not out.exists()
    assert not list(out.parent.glob(".*staging*"))


def test_bad_mat_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, (args, expected) in bad_mat_cases(tmp_path).items():
        out = tmp_path / "out"
        assert cli(["ingest", *args, f"output={out}"]) == 2, name
        assert_failed_cleanly(capsys, out, expected)


def test_bad_csv_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scipy.io.savemat(tmp_path / "d.mat", {"frames": stack(n=5)})
    cases = {
        "frame_index,label\n0,1\n1,yes\n": "l.csv:3: label 'yes' is not an integer",
        "frame_index,label\n0,1\n9,0\n": "unknown id: frame 9",
        "frame_index,label\n0,1\n0,0\n": "duplicate frame 0",
        "frame,cls\n0,1\n": "no 'label' column",
        "": "labels file is empty",
    }
    for text, expected in cases.items():
        csv = write_csv(tmp_path / "l.csv", text)
        out = tmp_path / "out"
        assert cli(["ingest", f"input={tmp_path / 'd.mat'}", f"labels={csv}", f"output={out}"]) == 2
        assert_failed_cleanly(capsys, out, expected)
    csv = write_csv(tmp_path / "l.csv", "frame_index,label\n0,1\n")
    args = [f"input={tmp_path / 'd.mat'}", f"labels={csv}", "labels_strict=true"]
    assert cli(["ingest", *args, f"output={tmp_path / 'out'}"]) == 2
    assert_failed_cleanly(capsys, tmp_path / "out", "4 items have no label")


def test_bad_folder_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_folder(tmp_path / "in")
    (tmp_path / "in" / "roots" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    assert cli(["ingest", f"input={tmp_path / 'in'}", f"output={out}", "shard_size=1"]) == 2
    assert_failed_cleanly(capsys, out, "broken.jpg: not a readable image")
    (tmp_path / "empty").mkdir()
    assert cli(["ingest", f"input={tmp_path / 'empty'}", f"output={out}"]) == 2
    assert_failed_cleanly(capsys, out, "no image files")
    csv = write_csv(tmp_path / "l.csv", "file,label\nzzz.png,1\n")
    (tmp_path / "in" / "roots" / "broken.jpg").unlink()
    assert cli(["ingest", f"input={tmp_path / 'in'}", f"labels={csv}", f"output={out}"]) == 2
    assert_failed_cleanly(capsys, out, "unknown id 'zzz.png'")


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "d.mat", {"frames": stack(n=3)})
    run(Config(input=str(tmp_path / "d.mat"), output=str(tmp_path / "o")))
    before = (tmp_path / "o" / "dataset.json").read_text()
    with pytest.raises(EchoseekError, match="not empty"):
        run(Config(input=str(tmp_path / "d.mat"), output=str(tmp_path / "o")))
    assert (tmp_path / "o" / "dataset.json").read_text() == before
    scipy.io.savemat(tmp_path / "d.mat", {"frames": stack(n=5)})
    run(Config(input=str(tmp_path / "d.mat"), output=str(tmp_path / "o"), overwrite=True))
    assert read_descriptor(tmp_path / "o")["count"] == 5


@pytest.mark.slow
def test_read_dataset_is_a_lazy_ray_dataset(tmp_path: Path, ray_session: object) -> None:
    from echoseek.data.dataset import read_dataset

    frames = stack(n=10)
    scipy.io.savemat(tmp_path / "d.mat", {"frames": frames})
    run(Config(input=str(tmp_path / "d.mat"), output=str(tmp_path / "o"), shard_size=3))
    ds = read_dataset(tmp_path / "o")
    assert ds.count() == 10
    first = ds.sort("frame_index").take(1)[0]
    np.testing.assert_array_equal(decode_png(first["image"]), frames[:, :, 0])
