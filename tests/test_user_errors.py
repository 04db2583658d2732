"""Every user error is one line and exit 2, and leaves the output location as it was.

One test per case of issue 10, item 4 (and SIGTERM, and ``--help`` listing the config keys).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from echoseek.cli import main as cli

REPO = Path(__file__).resolve().parents[1]


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI; assert exit 2 and a single stderr line without a traceback."""
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err.strip()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    return folder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    from tests.datasets import ingested_stack, random_stack

    return ingested_stack(tmp_path, random_stack(8, 8, 20), labelled=20, shard_size=8)


# --- output directories that cannot be created ------------------------------------------


def test_output_under_proc(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, ["ingest", f"input={images}", "output=/proc/echoseek/out"])
    assert "/proc/echoseek/out: cannot create directory" in err
    assert not Path("/proc/echoseek").exists()


def test_output_under_a_regular_file(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = one_line_error(capsys, ["ingest", f"input={images}", f"output={blocker / 'sub'}"])
    assert f"{blocker / 'sub'}: cannot create directory ({blocker} is not a directory)" in err
    assert blocker.read_text() == "x"


def make_read_only(path: Path) -> Callable[[], None]:
    """No new entries in ``path``, for root too (root ignores mode bits, not the immutable
    attribute); returns the undo."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    subprocess.run(["chattr", "+i", str(path)], check=True)
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True) and None


def test_output_under_a_read_only_parent(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    undo = make_read_only(parent)
    try:
        err = one_line_error(capsys, ["ingest", f"input={images}", f"output={parent / 'o'}"])
        assert f"{parent / 'o'}: cannot create directory" in err
        assert list(parent.iterdir()) == []
    finally:
        undo()


def test_evaluate_output_is_a_file(
    tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "metrics"
    out.write_text("keep")
    err = one_line_error(capsys, ["evaluate", f"input={dataset}", f"output={out}"])
    assert f"{out}: output path exists and is not a directory" in err
    assert out.read_text() == "keep"


def test_index_eval_output_is_a_file_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    out.write_text("keep")
    # The index does not even exist: the output is refused first, before anything is read.
    argv = ["index eval", f"input={tmp_path / 'no_index'}", f"output={out}"]
    err = one_line_error(capsys, [*argv[0].split(), *argv[1:]])
    assert f"{out}: output path exists and is not a directory" in err
    assert out.read_text() == "keep"


# --- inputs -------------------------------------------------------------------------------


def test_config_file_not_utf8(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "job.yaml"
    config.write_bytes(b"shard_size: 4\noutput: \xff\xfe\n")
    err = one_line_error(capsys, ["ingest", str(config), f"input={images}"])
    assert f"{config}: config file is not UTF-8 text (byte 0xff at offset 22)" in err


def test_label_overflowing_int64(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,label\na.png,{2**63}\n")
    out = tmp_path / "out"
    err = one_line_error(capsys, ["ingest", f"input={images}", f"labels={labels}", f"output={out}"])
    assert f"{labels}:2: label {2**63} does not fit in a 64-bit integer" in err
    assert not out.exists()


def write_model_dir(path: Path, weights: bytes | None = None, **meta: object) -> Path:
    """A model dir with a valid small ``model.json`` (fields overridden by ``meta``)."""
    from echoseek.models.artifact import ModelMeta

    doc = {**ModelMeta(small_stem=True, input_size=(32, 32)).to_json(), **meta}
    path.mkdir()
    (path / "model.json").write_text(json.dumps(doc))
    (path / "model.pt").write_bytes(weights or b"")
    return path


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        ([32, 48], "must be square (height = width), got [32, 48]"),
        ([0, 0], "must be two positive sizes, got [0, 0]"),
    ],
)
def test_model_json_bad_input_size(
    tmp_path: Path,
    dataset: Path,
    size: list[int],
    problem: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = write_model_dir(tmp_path / "model", input_size=size)
    out = tmp_path / "eval"
    err = one_line_error(
        capsys, ["evaluate", f"input={dataset}", f"model={model}", f"output={out}"]
    )
    assert f"{model / 'model.json'}: input_size: {problem}" in err
    assert not out.exists()


def test_unknown_faiss_factory_leaves_no_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = tmp_path / "v.npy"
    np.save(vectors, np.random.default_rng(0).random((50, 8), dtype=np.float32))
    root = tmp_path / "index"
    argv = ["index", "build", f"input={vectors}", f"output={root}", "build.use_ray=false"]
    err = one_line_error(capsys, [*argv, "index.factory=IVF4,Bogus12"])
    assert "index.factory: faiss cannot build 'IVF4,Bogus12' for dimension 8" in err
    assert not root.exists()


def test_ragged_npy_names_the_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vectors = tmp_path / "ragged.npy"
    rows = [np.ones(8, np.float32), np.ones(8, np.float32), np.ones(5, np.float32)]
    np.save(vectors, np.array(rows, dtype=object), allow_pickle=True)
    root = tmp_path / "index"
    err = one_line_error(capsys, ["index", "build", f"input={vectors}", f"output={root}"])
    assert f"{vectors}: row 2 has 5 values but row 0 has 8" in err
    assert not root.exists()


@pytest.mark.parametrize("content", ["pickle", "garbage"])
def test_invalid_npy_gives_no_pickle_advice(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = tmp_path / "v.npy"
    vectors.write_bytes(pickle.dumps({"x": 1}) if content == "pickle" else b"\x93NUMPYjunk")
    root = tmp_path / "index"
    err = one_line_error(capsys, ["index", "build", f"input={vectors}", f"output={root}"])
    assert f"{vectors}: not a" in err and "allow_pickle" not in err
    assert not root.exists()


class _Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("kind", ["malicious", "garbage"])
def test_finetune_refuses_bad_pretrained_before_ray(
    tmp_path: Path,
    dataset: Path,
    kind: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    import echoseek.ray_session

    started: list[bool] = []  # Ray may already run in this test session: record a start call
    monkeypatch.setattr(echoseek.ray_session, "ensure_ray", lambda *a, **k: started.append(True))

    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    if kind == "malicious":
        torch.save({"conv.weight": _Evil(marker)}, weights)
    else:
        weights.write_bytes(b"\x00garbage" * 16)
    model = write_model_dir(tmp_path / "pretrained", weights=weights.read_bytes())
    storage, store = tmp_path / "ray_results", tmp_path / "mlflow.db"
    argv = [
        "finetune",
        f"input={dataset}",
        f"pretrained={model}",
        f"output={tmp_path / 'model'}",
        "batch_size=8",
        f"run.storage_path={storage}",
        f"run.tracking_uri=sqlite:///{store}",
    ]
    err = one_line_error(capsys, argv)
    assert f"{model / 'model.pt'}: not a loadable state dict" in err
    assert not marker.exists()  # never unpickled
    assert not storage.exists() and not store.exists()  # no checkpoint dir, no MLflow run
    assert not (tmp_path / "model").exists()
    assert not started  # refused on the driver before Ray was asked for


# --- signals ------------------------------------------------------------------------------

SLOW_JOB = textwrap.dedent(
    """
    import sys, time
    from dataclasses import dataclass
    from echoseek.jobs.runner import run_job
    from echoseek.storage import staged_dir

    @dataclass
    class Config:
        input: str = ""
        output: str = ""

    def run(cfg):
        with staged_dir(cfg.output) as staging:
            (staging / "part-00000").write_text("half")
            print("staged", flush=True)
            time.sleep(60)
        return {}

    sys.exit(run_job(Config, run, sys.argv[1:], "echoseek slow"))
    """
)


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_JOB, f"output={out}"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "staged"
    assert any(".staging-" in p.name for p in tmp_path.iterdir())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert err.strip() == "echoseek slow: terminated (SIGTERM)"
    assert list(tmp_path.iterdir()) == []  # staging removed by the normal exception path


# --- help and the README's example ------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        ("index build", ["index.factory=''", "build.num_shards=0", "build.target_recall=0.9"]),
        ("finetune", ["optim.lr=0.001", "head.dim=128", "augment.rotation_deg=5.0"]),
        ("ingest", ["shard_size=1024", "max_pixels=67108864", "labels=null"]),
    ],
)
def test_help_lists_config_keys_with_defaults(
    command: str, keys: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli([*command.split(), "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    listed = {
        line.split()[0]
        for line in out.split("config keys (key=default  type):")[1].splitlines()[1:]
        if line
    }
    assert set(keys) <= listed


def test_readme_override_example_is_a_real_key() -> None:
    from echoseek.config import field_defaults
    from echoseek.jobs.finetune import Config

    readme = (REPO / "README.md").read_text()
    found = re.search(r"`echoseek (\w+)\s+\.\.\. ([\w.]+)=[^`]+`", readme)
    assert found is not None and found.group(1) == "finetune"
    assert found.group(2) in {key for key, _, _ in field_defaults(Config)}
    assert "train.lr" not in readme


def test_sigterm_handler_is_restored_after_the_job() -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert cli(["ingest", "input="]) == 2
    assert signal.getsignal(signal.SIGTERM) == before
    time.sleep(0)  # nothing pending
