"""``echoseek phantom``: the CLI writes the phantom files; bad options exit 2 on one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echoseek import cli
from echoseek.config import load_config
from echoseek.jobs import phantom as job

# 8 s of cine with one 2.4 s breath hold (the default three would not fit)
SMALL = [
    "frames=40",
    "height=64",
    "width=64",
    "frame_rate=5",
    "breath_holds=1",
    "breath_hold_s=2.4",
]


def test_cli_writes_the_phantom_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "phantom"
    assert cli.main(["phantom", f"output={out}", *SMALL]) == 0
    files = {p.name for p in out.iterdir()}
    names = {"dataset.mat", "dataset_labels.csv", "dataset_phase_labels.csv", "invivo.png"}
    names.add("dataset_anomaly_labels.csv")
    assert {*names, "phantom.json"} == files
    printed = capsys.readouterr().out
    assert "40 frames 64x64" in printed and str(out) in printed
    labels = (out / "dataset_labels.csv").read_text().splitlines()
    assert labels[0] == "frame_index,label" and len(labels) == 41
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["mat_format"] == "v5" and meta["params"]["frames"] == 40
    assert meta["positives"] == sum(int(row.split(",")[1]) for row in labels[1:])


def test_cli_json_summary_and_v73(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p73"
    argv = ["phantom", f"output={out}", "mat_format=v7.3", "seed=4", *SMALL, "--json"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mat_format"] == "v7.3" and summary["seed"] == 4
    assert summary["frames"] == 40 and 0 < summary["positives"] < 40
    assert (out / "dataset.mat").read_bytes()[:19] == b"MATLAB 7.3 MAT-file"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("frames=0", "frames"),
        ("positive_ratio=1.5", "positive_ratio"),
        ("mat_format=v6", "mat_format"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, field: str
) -> None:
    out = tmp_path / "never"
    assert cli.main(["phantom", f"output={out}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("echoseek phantom: error: ") and field in err
    assert not out.exists()


def test_existing_output_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "phantom"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    assert cli.main(["phantom", f"output={out}", *SMALL]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert (out / "old.txt").exists()
    assert cli.main(["phantom", f"output={out}", *SMALL, "overwrite=true"]) == 0
    assert not (out / "old.txt").exists() and (out / "dataset.mat").exists()


def test_config_has_input_output_and_the_generator_fields() -> None:
    cfg = load_config(job.Config, None, ["seed=7", "hard_negative_rate=0.1"])
    assert cfg.output == "work/phantom" and cfg.input is None
    params = cfg.params()
    assert type(params).__name__ == "PhantomParams"
    assert params.seed == 7 and params.hard_negative_rate == 0.1 and params.frames == 445
