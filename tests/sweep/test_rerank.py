"""The re-ranking sweep (`echoseek tune` with `job: rerank`): every setting scored on
held-out labelled queries against an exact brute-force ranking, MLflow parent and child runs,
results and best.yaml, bad spaces refused before any search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from echoseek.config import from_dict
from echoseek.data.vectors import write_vectors
from echoseek.errors import ConfigError
from echoseek.evaluation.ranking import ap_at_k
from echoseek.jobs import index_build, tune
from echoseek.sweep.rerank import RerankSetting

DIM, CLASSES = 16, 3


def labelled(rng: np.random.Generator, n: int, centres: np.ndarray) -> tuple[np.ndarray, list]:
    labels = rng.integers(0, CLASSES, n)
    x = centres[labels] + rng.normal(scale=1.2, size=(n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [int(v) for v in labels]


def vectors_dir(path: Path, x: np.ndarray, labels: list, prefix: str) -> Path:
    ids = [f"{prefix}{i}" for i in range(len(x))]
    write_vectors(path, [(ids, x, {"label": labels})], dim=DIM, model_uri="test")
    return path


def brute_force_map(x: np.ndarray, xl: list, q: np.ndarray, ql: list, k: int) -> float:
    """Mean AP@k of cosine top-k over the whole corpus (exact, numpy)."""
    corpus = np.asarray(xl)
    aps = []
    for v, label in zip(q, ql, strict=True):
        top = np.argsort(-(x @ v), kind="stable")[:k]
        rel = (corpus[top] == label).astype(float)
        aps.append(ap_at_k(rel, int((corpus == label).sum()), k))
    return float(np.mean(aps))


@pytest.mark.slow
def test_rerank_sweep_scores_every_setting_on_held_out_queries(
    ray_session: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLASSES, DIM))
    x, xl = labelled(rng, 300, centres)
    q, ql = labelled(rng, 40, centres)  # held out: never indexed
    index_build.run(
        index_build.Config(
            input=str(vectors_dir(tmp_path / "corpus", x, xl, "c")), output=str(tmp_path / "idx")
        )
    )
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tune.Config(
        name="rr",
        job="rerank",
        index=str(tmp_path / "idx"),
        input=str(vectors_dir(tmp_path / "held_out", q, ql, "q")),
        output=str(tmp_path / "sweep"),
        fixed={"k": 10},
        space={
            "rerank,rerank_params": {
                "grid": [["cosine", {}], ["soart3_gamma", {"p": 2}], ["false", {}]]
            },
            "rerank_depth": {"grid": [10, 30]},
        },
        tracking_uri=tracking,
    )
    summary = tune.run(cfg)
    assert summary["settings"] == 6
    table = pq.read_table(tmp_path / "sweep" / "results.parquet").to_pylist()
    assert len(table) == 6 and {r["status"] for r in table} == {"finished"}
    assert table[0]["val_map"] == max(r["val_map"] for r in table)  # best first
    assert all(r["latency_ms_p95"] >= r["latency_ms_p50"] > 0 for r in table)
    # the index of 300 vectors is exact (Flat): cosine re-rank of any depth >= k is the
    # brute-force cosine ranking
    expected = brute_force_map(x, xl, q, ql, 10)
    cosine = [r for r in table if r["param.rerank,rerank_params"] == '["cosine", {}]']
    assert len(cosine) == 2
    for r in cosine:
        assert r["val_map"] == pytest.approx(expected, abs=1e-6)
    gamma = {r["param.rerank_depth"]: r["val_map"] for r in table if "soart3" in r[
        "param.rerank,rerank_params"]}  # fmt: skip
    assert gamma["10"] != pytest.approx(gamma["30"])  # depth changes what SOART3 re-ranks
    best = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    setting = from_dict(RerankSetting, {k: v for k, v in best.items() if not k.startswith("index")})
    assert best["index_version"] == summary["index_version"] and setting.k == 10
    assert (tmp_path / "sweep" / "metric_vs_latency.png").stat().st_size > 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking)
    parent = client.get_run(summary["run_id"])
    assert parent.data.tags["best_trial"] == table[0]["trial_id"]
    assert parent.data.params["space.rerank rerank_params.grid"].startswith("[['cosine'")
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{summary['run_id']}'"
    )
    assert len(children) == 6
    assert {c.data.params["override.rerank_depth"] for c in children} == {"10", "30"}
    assert all("val_map" in c.data.metrics for c in children)


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ({"rerank": {"uniform": [0.0, 1.0]}}, "space.rerank"),
        ({"rerank": {"grid": ["nope"]}}, "space.rerank"),
        ({"rerank_depth": {"grid": [5]}}, "space.rerank_depth"),  # below k = 10
        ({"rerank_params": {"grid": [{"p": 2}]}}, "space.rerank_params"),  # cosine takes no p
    ],
)
def test_bad_rerank_spaces_fail_before_any_search(
    space: dict[str, Any], named: str, tmp_path: Path
) -> None:
    cfg = tune.Config(
        job="rerank", index=str(tmp_path / "none"), input=str(tmp_path / "none"),
        output=str(tmp_path / "out"), space=space,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        tune.run(cfg)
    assert not (tmp_path / "out").exists()


def test_rerank_sweep_needs_an_index_and_queries(tmp_path: Path) -> None:
    cfg = tune.Config(job="rerank", space={"rerank_depth": {"grid": [10]}})
    with pytest.raises(ConfigError, match="index and input are required"):
        tune.run(cfg)
