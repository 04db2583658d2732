"""Every image read is bounded: a huge header is refused before decoding, naming the file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from echoseek.cli import main as cli
from echoseek.errors import InputError
from echoseek.ingest.folders import MAX_PIXELS, check_pixels, load_image


def png_declaring(path: Path, width: int, height: int, mode: str = "1") -> Path:
    """A tiny PNG whose IHDR is patched (CRC fixed) to declare ``width`` x ``height``."""
    Image.new(mode, (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"  # 8-byte signature, then length, type, 13 bytes, CRC
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("side", [20000, 100000, 9000])
def test_huge_png_header_is_refused_by_ingest(
    tmp_path: Path, side: int, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    bomb = png_declaring(folder / "bomb.png", side, side)
    err = one_line_error(capsys, ["ingest", f"input={folder}", f"output={tmp_path / 'out'}"])
    assert str(bomb) in err and "max_pixels" in err and f"{MAX_PIXELS}" in err
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["imgs"]  # no staging dir left


def test_max_pixels_is_configurable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    out = tmp_path / "out"
    err = one_line_error(capsys, ["ingest", f"input={folder}", f"output={out}", "max_pixels=63"])
    assert f"{folder / 'a.png'}: image of 8x8 pixels exceeds the limit of 63" in err
    assert not out.exists()
    assert cli(["ingest", f"input={folder}", f"output={out}", "max_pixels=64"]) == 0


def test_header_is_checked_before_decoding(tmp_path: Path) -> None:
    # The patched file's pixel data is 8x8: decoding would fail, the size rule fires first.
    bomb = png_declaring(tmp_path / "b.png", 100, 100, mode="L")
    with pytest.raises(InputError, match=r"b\.png: image of 100x100 pixels exceeds"):
        load_image(bomb, max_pixels=99 * 100)


def test_check_pixels_rule() -> None:
    check_pixels(8, 8, "x", max_pixels=64)
    with pytest.raises(InputError, match="x: image of 8x9 pixels exceeds the limit of 64"):
        check_pixels(8, 9, "x", max_pixels=64)


def test_mat_frames_over_the_limit_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scipy.io.savemat(tmp_path / "d.mat", {"frames": np.zeros((20, 20, 3), np.uint8)})
    argv = ["ingest", f"input={tmp_path / 'd.mat'}", f"output={tmp_path / 'o'}"]
    err = one_line_error(capsys, [*argv, "max_pixels=399"])
    assert f"{tmp_path / 'd.mat'}: frames of 'frames'" in err and "20x20" in err
    assert not (tmp_path / "o").exists()


def test_nan_in_float_tiff_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    pixels = np.ones((8, 8), np.float32)
    pixels[3, 4] = np.nan
    Image.fromarray(pixels, mode="F").save(folder / "nan.tif")
    err = one_line_error(capsys, ["ingest", f"input={folder}", f"output={tmp_path / 'o'}"])
    assert f"{folder / 'nan.tif'}: F pixels contain NaN or infinite values" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_query_image_is_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.datasets import ingested_stack, random_stack

    dataset = ingested_stack(tmp_path, random_stack(8, 8, 6), labelled=6, shard_size=4)
    query = png_declaring(tmp_path / "query.png", 100000, 100000)
    out = tmp_path / "eval"
    err = one_line_error(
        capsys, ["evaluate", f"input={dataset}", f"query={query}", f"output={out}"]
    )
    assert str(query) in err and "exceeds the limit" in err
    assert not out.exists()
