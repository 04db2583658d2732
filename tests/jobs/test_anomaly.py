"""``echoseek anomaly``: scores against a dataset and an index of normal items, the metrics
file, the MLflow run, the command line and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from echoseek.baseline import pixel_embed
from echoseek.data.dataset import DatasetWriter, Row
from echoseek.data.vectors import VectorBatch, write_vectors
from echoseek.errors import ConfigError, InputError
from echoseek.evaluation.anomaly import knn_scores
from echoseek.index import build_index
from echoseek.jobs import anomaly


def image(rng: np.random.Generator, anomalous: bool) -> np.ndarray:
    """A smooth horizontal gradient with noise; an anomaly carries a bright square."""
    img = np.tile(np.linspace(40, 200, 32), (32, 1)) + rng.normal(0, 12, (32, 32))
    if anomalous:
        top, left = rng.integers(2, 18, size=2)
        img[top : top + 12, left : left + 12] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def dataset(path: Path, seed: int, labels: list[int]) -> tuple[list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    ids, images = [], []
    with DatasetWriter(path, {"kind": "test"}, shard_size=16) as writer:
        for i, label in enumerate(labels):
            images.append(image(rng, anomalous=label == 1))
            ids.append(f"s{seed}-{i}")
            writer.add(Row(ids[-1], images[-1], "test", label=label))
    return ids, images


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("anomaly")
    dataset(root / "normal", 1, [0] * 40)
    dataset(root / "test", 2, [0] * 30 + [1] * 10)
    return root


def config(data: Path, out: Path, **kw: object) -> anomaly.Config:
    store = f"sqlite:///{data}/mlflow.db"
    values = {"input": str(data / "test"), "reference": str(data / "normal"), "output": str(out)}
    return anomaly.Config(**{**values, "k": 3, "tracking_uri": store, **kw})  # type: ignore[arg-type]


def test_scores_metrics_and_run_against_a_dataset_reference(data: Path, tmp_path: Path) -> None:
    cfg = config(data, tmp_path / "out", normal_labels=[0])
    summary = anomaly.run(cfg)
    table = pq.read_table(tmp_path / "out" / "scores.parquet").to_pydict()
    assert table["id"] == [f"s2-{i}" for i in range(40)] and table["label"] == [0] * 30 + [1] * 10
    _, test_images = dataset(tmp_path / "again", 2, [0] * 30 + [1] * 10)
    _, normal_images = dataset(tmp_path / "again-normal", 1, [0] * 40)
    expected = knn_scores(pixel_embed(test_images), pixel_embed(normal_images), 3)
    np.testing.assert_allclose(table["score"], expected, atol=1e-6)
    assert min(table["percentile"]) >= 0 and max(table["percentile"]) <= 100
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    truth = np.array(table["label"]) == 1
    assert metrics["auroc"] == pytest.approx(roc_auc_score(truth, table["score"]))
    assert metrics["auroc"] > 0.9 and metrics["anomalies"] == 10 and metrics["normal"] == 30
    assert (tmp_path / "out" / "score_histogram.png").stat().st_size > 1000
    run = MlflowClient(cfg.tracking_uri).get_run(summary["run_id"])
    assert run.data.metrics["auroc"] == pytest.approx(metrics["auroc"])
    assert run.data.tags["job"] == "anomaly"


def test_an_index_reference_never_counts_an_item_itself(data: Path, tmp_path: Path) -> None:
    ids, images = dataset(tmp_path / "normal", 1, [0] * 40)
    vectors = pixel_embed(images)
    write_vectors(tmp_path / "vec", [VectorBatch(ids, vectors, {})], vectors.shape[1], "pixels")
    build_index(tmp_path / "vec", tmp_path / "index", use_ray=False, num_shards=2)
    cfg = config(data, tmp_path / "out", input=str(data / "normal"), log=False)
    cfg.reference = str(tmp_path / "index")
    summary = anomaly.run(cfg)
    scores = pq.read_table(tmp_path / "out" / "scores.parquet").column("score").to_numpy()
    leave_one_out = knn_scores(vectors, vectors, 3, ids, ids)
    np.testing.assert_allclose(scores, leave_one_out, atol=2e-3)  # float16 stored vectors
    assert summary["reference_items"] == 40 and summary["run_id"] == ""
    assert "auroc" not in summary and not (tmp_path / "out" / "score_histogram.png").exists()


def test_bad_input_names_the_problem(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reference is required"):
        anomaly.run(config(data, tmp_path / "a", reference=""))
    with pytest.raises(InputError, match="is neither a dataset"):
        anomaly.run(config(data, tmp_path / "b", reference=str(tmp_path)))
    with pytest.raises(InputError, match="k=40: the reference has 40 items; k must be 1"):
        anomaly.run(config(data, tmp_path / "c", k=40, log=False))
    with pytest.raises(InputError, match="both anomalies and normal items"):
        anomaly.run(config(data, tmp_path / "d", normal_labels=[0, 1], log=False))
    assert not (tmp_path / "d").exists()  # nothing half-written
    with pytest.raises(ConfigError, match="k, batch_size and reference_sample must be positive"):
        anomaly.Config(k=0)


def test_an_input_without_items_is_refused(data: Path, tmp_path: Path) -> None:
    from echoseek.data.dataset import DESCRIPTOR, SCHEMA
    from echoseek.storage import combined_sha256, sha256_file

    empty = tmp_path / "empty"
    empty.mkdir()
    pq.write_table(SCHEMA.empty_table(), empty / "part-00000.parquet")
    digest = sha256_file(empty / "part-00000.parquet")
    desc = {"format": "echoseek.dataset", "format_version": 1, "count": 0,
            "sha256": combined_sha256([digest]),
            "shards": [{"file": "part-00000.parquet", "rows": 0, "sha256": digest}]}  # fmt: skip
    (empty / DESCRIPTOR).write_text(json.dumps(desc))
    with pytest.raises(InputError, match="empty: the dataset holds no items to score"):
        anomaly.run(config(data, tmp_path / "out", input=str(empty), log=False))
    assert not (tmp_path / "out").exists()


def test_command_line(data: Path, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "echoseek.cli", "anomaly"]
    args = [f"input={data / 'test'}", f"reference={data / 'normal'}", "k=3", "normal_labels=[0]"]
    done = subprocess.run(
        [*cli, *args, f"output={tmp_path / 'out'}", f"tracking_uri=sqlite:///{tmp_path}/m.db"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "scored 40 items against 40 normal ones, k=3" in done.stdout
    assert "AUROC" in done.stdout and "FPR@95%TPR" in done.stdout
    bad = subprocess.run([*cli, "k=-1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "positive" in bad.stderr
