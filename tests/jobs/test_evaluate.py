"""Baseline evaluation: the team's metrics on a small synthetic labelled dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from sklearn.metrics import average_precision_score

from echoseek.baseline import pixel_embed
from echoseek.cli import main as cli
from echoseek.evaluation.retrieval import leave_one_out_metrics
from echoseek.jobs import evaluate, ingest


def make_dataset(tmp: Path, n: int = 60, n_pos: int = 12, seed: int = 0) -> tuple[Path, Path]:
    """Positives are noisy copies of one template; negatives are other random images."""
    rng = np.random.default_rng(seed)
    template = rng.integers(0, 256, (24, 24)).astype(np.float64)
    frames = rng.integers(0, 256, (24, 24, n)).astype(np.float64)
    labels = np.zeros(n, dtype=int)
    pos = rng.choice(n, n_pos, replace=False)
    labels[pos] = 1
    frames[:, :, pos] = template[:, :, None] + rng.normal(0, 25, (24, 24, n_pos))
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    scipy.io.savemat(tmp / "d.mat", {"frames": frames})
    (tmp / "l.csv").write_text(
        "frame_index,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels))
    )
    query = np.clip(template + rng.normal(0, 25, template.shape), 0, 255).astype(np.uint8)
    Image.fromarray(query).save(tmp / "q.png")
    ingest.run(
        ingest.Config(input=str(tmp / "d.mat"), labels=str(tmp / "l.csv"), output=str(tmp / "ds"))
    )
    return tmp / "ds", tmp / "q.png"


def test_evaluate_writes_metrics_and_separates_easy_positives(tmp_path: Path) -> None:
    ds, query = make_dataset(tmp_path)
    out = tmp_path / "eval"
    m = evaluate.run(evaluate.Config(input=str(ds), query=str(query), output=str(out), ks=[5, 10]))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["leave_one_out"]["map"] == pytest.approx(m["leave_one_out"]["map"])
    assert m["items"] == 60 and m["positives"] == 12 and m["positive_ratio"] == pytest.approx(0.2)
    assert m["query"]["ap"] > 0.95 and m["leave_one_out"]["map"] > 0.95
    assert m["query"]["p@10"] == pytest.approx(1.0)
    assert m["query"]["lift@10"] == pytest.approx(1.0 / 0.2)
    assert m["leave_one_out"]["num_queries"] == 12
    assert m["latency"]["median_ms"] > 0


def test_leave_one_out_equals_sklearn_without_self() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = rng.integers(0, 2, 40)
    got = leave_one_out_metrics(vectors, labels, ks=[5], positive_label=1)
    aps = []
    for q in np.flatnonzero(labels == 1):
        keep = np.arange(40) != q
        aps.append(average_precision_score(labels[keep] == 1, (vectors[keep] @ vectors[q])))
    assert got["map"] == pytest.approx(np.mean(aps), abs=1e-12)


def test_pixel_baseline_is_normalised_and_handles_rgb() -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    v = pixel_embed([gray, rgb], size=8)
    assert v.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)


def test_unlabelled_dataset_and_bad_ks_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scipy.io.savemat(tmp_path / "d.mat", {"frames": np.zeros((8, 8, 5), dtype=np.uint8)})
    ingest.run(ingest.Config(input=str(tmp_path / "d.mat"), output=str(tmp_path / "ds")))
    assert cli(["evaluate", f"input={tmp_path / 'ds'}", f"output={tmp_path / 'e'}"]) == 2
    assert "has no labels" in capsys.readouterr().err
    assert cli(["evaluate", f"input={tmp_path / 'ds'}", "ks=[0]"]) == 2
    assert "ks must be positive" in capsys.readouterr().err
    assert cli(["evaluate", f"input={tmp_path}"]) == 2
    assert "not a dataset directory" in capsys.readouterr().err
