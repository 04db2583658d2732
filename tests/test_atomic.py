"""Staged directories, atomic files and versioned JSON documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echoseek.errors import InputError
from echoseek.storage import read_json_document, staged_dir, write_json_atomic


def test_staged_dir_publishes_on_success_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with staged_dir(final) as staging:
        (staging / "a.txt").write_text("1")
        assert not final.exists()  # invisible until the block ends
    assert (final / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), staged_dir(final, overwrite=True) as staging:
        (staging / "a.txt").write_text("2")
        raise RuntimeError("crash mid-write")
    assert (final / "a.txt").read_text() == "1"  # the old version survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging debris


def test_staged_dir_refuses_to_clobber(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep")
    with pytest.raises(InputError, match="not empty"), staged_dir(tmp_path / "out"):
        pass
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a directory"), staged_dir(tmp_path / "file"):
        pass
    assert (tmp_path / "out" / "x").read_text() == "keep"


def test_read_json_document_checks_the_header(tmp_path: Path) -> None:
    doc = tmp_path / "d.json"
    with pytest.raises(InputError, match="not a thing"):
        read_json_document(doc, "echoseek.thing", 1, "not a thing")
    doc.write_text("{broken")
    with pytest.raises(InputError, match=r"d\.json: corrupt"):
        read_json_document(doc, "echoseek.thing", 1, "missing")
    doc.write_text("[1, 2]")
    with pytest.raises(InputError, match=r"not an echoseek\.thing document"):
        read_json_document(doc, "echoseek.thing", 1, "missing")
    write_json_atomic(doc, {"format": "echoseek.thing", "format_version": 2})
    with pytest.raises(InputError, match="format_version 2 is not supported"):
        read_json_document(doc, "echoseek.thing", 1, "missing")
    write_json_atomic(doc, {"format": "echoseek.thing", "format_version": 1, "x": [1]})
    assert read_json_document(doc, "echoseek.thing", 1, "missing")["x"] == [1]
    assert json.loads(doc.read_text())["x"] == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]  # no temp files left
