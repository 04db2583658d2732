"""`echoseek report` end to end: a real model artifact with its real MLflow run, the report
set, a PDF printed by headless Chromium with CJK fonts, checked through poppler (page images
and the text layer), and the set logged back to the model's run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from echoseek.cli import main as cli
from echoseek.data.dataset import read_descriptor
from echoseek.jobs import evaluate
from echoseek.models.artifact import ModelMeta, build_model, save_model
from echoseek.report import figures
from tests.datasets import ingested_stack, random_stack

pytestmark = pytest.mark.slow

TITLE = "呼吸停止フレーム検索レポート"
FILES = {
    "metrics.json",
    "topk_result.md",
    "analytics_summary.json",
    "training_loss_curve.png",
    "label_distribution.png",
    "topk_positive_ratio.png",
    "topk_similarity_curve.png",
    "topk_grid.png",
    "report.md",
    "report.html",
    "report.pdf",
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 30-frame labelled corpus (odd frames positive), frame 1 as the query image, and a
    model whose model.json names an MLflow run with a loss and val_map history."""
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("report")
    frames = random_stack(20, 20, 30)
    dataset = ingested_stack(tmp, frames, labelled=30, shard_size=16)
    Image.fromarray(frames[:, :, 1]).save(tmp / "query.png")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.create_experiment("t", artifact_location=(tmp / "art").as_uri())
    run = client.create_run(experiment, run_name="finetune-t")
    client.log_param(run.info.run_id, "optim.lr", "0.01")
    # the model "trained on" this very corpus: the report must say its scores are not held-out
    client.set_tag(run.info.run_id, "dataset_sha256", read_descriptor(dataset)["sha256"])
    for epoch, (loss, val) in enumerate([(0.9, 0.4), (0.7, 0.5), (0.6, 0.55)]):
        client.log_metric(run.info.run_id, "loss", loss, step=epoch)
        client.log_metric(run.info.run_id, "val_map", val, step=epoch)
    client.set_terminated(run.info.run_id)
    torch.manual_seed(0)
    meta = ModelMeta(small_stem=True, head_dim=16, head_hidden=32, input_size=(16, 16),
                     extra={"mlflow_run_id": run.info.run_id})  # fmt: skip
    save_model(build_model(meta), tmp / "model", meta)
    return {"tmp": tmp, "dataset": dataset, "store": store, "run_id": run.info.run_id,
            "model": tmp / "model", "query": tmp / "query.png"}  # fmt: skip


def args(made: dict[str, Any], out: Path, **extra: Any) -> list[str]:
    values = {
        "input": made["dataset"],
        "model": made["model"],
        "query": made["query"],
        "output": out,
        "tracking_uri": made["store"],
        "latency_repeats": 2,
        **extra,
    }
    return ["report", *(f"{k}={v}" for k, v in values.items())]


def poppler(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout


def test_the_report_set_is_written_printed_and_logged(made: dict[str, Any], tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "report"
    names = 'label_names={"1": "息止め", "0": "その他"}'
    assert cli([*args(made, out, title=TITLE), names]) == 0
    assert {p.name for p in out.iterdir()} == FILES

    # the numbers are evaluate's own, measured on this corpus with this query
    m = json.loads((out / "metrics.json").read_text())
    ref = evaluate.run(evaluate.Config(input=str(made["dataset"]), model=str(made["model"]),
                                       query=str(made["query"]), output=str(tmp_path / "e"),
                                       latency_repeats=2))  # fmt: skip
    assert m["map"] == pytest.approx(ref["leave_one_out"]["map"])
    assert m["query_ap"] == pytest.approx(ref["query"]["ap"])
    assert (m["frames"], m["positives"], m["mlflow_run_id"]) == (30, 15, made["run_id"])
    assert m["seconds_per_query"] > 0 and m["trained_on_this_dataset"] is True
    a = json.loads((out / "analytics_summary.json").read_text())
    assert set(a["top_k"]) == {"10", "20"}  # K = 50 is beyond the 30 frames
    assert a["top_k"]["10"]["ratio"] == pytest.approx(ref["query"]["p@10"])
    assert a["top_k"]["20"]["lift"] == pytest.approx(ref["query"]["lift@20"])
    # the query is frame 1 itself: it ranks first, with a cosine score of 1
    top = (out / "topk_result.md").read_text().splitlines()
    first = [c.strip() for c in top[top.index("|---|---|---|---|---|---|") + 1].split("|")]
    assert first[1:5] == ["1", "1", "1.0000", "息止め"]
    assert len([line for line in top if line.startswith("| ")]) == 11  # header + K = 10
    report_md = (out / "report.md").read_text()
    assert report_md.startswith(f"# {TITLE}") and "NOT held-out" in report_md
    assert "| optim.lr | 0.01 |" in report_md  # the training run's config
    for name in FILES - {"report.pdf"}:
        assert name.endswith((".json", ".md", ".html")) or Image.open(out / name).size > (100, 100)

    # the PDF: real pages (poppler renders each to an image) and a text layer holding the mAP,
    # the Japanese title and label names (fonts from `make fonts`)
    assert figures.cjk_families(), "no CJK font: run `make fonts`"
    pages = int(poppler("pdfinfo", str(out / "report.pdf")).split("Pages:")[1].split()[0])
    poppler("pdftoppm", "-r", "40", "-png", str(out / "report.pdf"), str(tmp_path / "page"))
    images = sorted(tmp_path.glob("page-*.png"))
    assert len(images) == pages >= 2
    assert all(np.asarray(Image.open(p).convert("L")).std() > 5 for p in images)  # not blank
    text = poppler("pdftotext", str(out / "report.pdf"), "-")
    assert f"{m['map']:.4f}" in text and TITLE in text and "息止め" in text

    client = MlflowClient(made["store"])
    logged = {f.path for f in client.list_artifacts(made["run_id"], "report")}
    assert {"report/report.pdf", "report/metrics.json", "report/topk_grid.png"} <= logged


def test_the_pixel_baseline_has_no_run_and_no_pdf_when_asked(
    made: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "r"
    assert cli(args(made, out, model="pixels", pdf="false")) == 0
    assert {p.name for p in out.iterdir()} == FILES - {"report.pdf"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["mlflow_run_id"] == "" and m["trained_on_this_dataset"] is False
    assert "No MLflow training run is known" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        ({"query": ""}, {}, "input, model and query are required"),
        ({"positive_label": 7}, {}, "no positive labels"),
        ({"model": "models:/nobody@champion"}, {}, "models:/nobody@champion: cannot fetch"),
        ({}, {"ECHOSEEK_CHROMIUM": "no-such-chromium"}, "no PDF engine: no-such-chromium"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_output(
    made: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: dict[str, Any],
    env: dict[str, str],
    message: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "nested" / "report"
    assert cli(args(made, out, **extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "nested").exists()
    assert shutil.which("chromium")  # the PDF engine the first test relies on
