"""The team's report set for one query image against a labelled corpus, in one command.

    echoseek report input=work/demo/dataset model=work/demo/model \
        query=work/demo/phantom/invivo.png output=work/demo/report
    make report                     # the demo's promoted model, into work/demo/report

Writes ``metrics.json``, ``topk_result.md``, ``analytics_summary.json``, five figures and
``report.md``, ``report.html`` and ``report.pdf`` (headless Chromium; CJK fonts from
``make fonts``) into ``output`` (staged, then renamed into place), and logs the directory to
the model's MLflow run under ``report/``. ``model`` is a model directory, a ``models:/NAME/VER``
or ``models:/NAME@ALIAS`` URI, or ``pixels`` (the raw-pixel baseline).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from echoseek.errors import ConfigError
from echoseek.ingest.folders import load_image
from echoseek.jobs import evaluate
from echoseek.jobs.runner import run_job
from echoseek.model_ref import ModelRef
from echoseek.report.analytics import rank
from echoseek.report.build import Evidence, read_items, write_report
from echoseek.report.pdf import find_browser, html_to_pdf
from echoseek.report.provenance import model_run
from echoseek.service.thumbnails import Thumbnails
from echoseek.storage import check_output_dir, staged_dir
from echoseek.tracking import RunLogger, tracking_uri


@dataclass
class Config:
    """Options of ``echoseek report``."""

    input: str = ""  # labelled dataset directory (the corpus)
    output: str = "work/report"
    model: str = ""  # model dir, models:/NAME@ALIAS or models:/NAME/VERSION, or "pixels"
    query: str = ""  # the query image (e.g. the breath-hold reference invivo.png)
    title: str = "echoseek retrieval report"
    positive_label: int = 1  # the query's class
    label_names: dict[str, str] = field(default_factory=dict)  # label -> shown name
    k: int = 10  # rows of the top-K table and thumbnails in the grid
    ks: list[int] = field(default_factory=lambda: [10, 20, 50])  # analytics_summary's K
    tracking_uri: str = ""  # MLflow store (default $MLFLOW_TRACKING_URI or ./mlflow)
    log: bool = True  # log the report to the model's MLflow run
    pdf: bool = True
    overwrite: bool = False
    latency_repeats: int = 20
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.k <= 0 or any(k <= 0 for k in self.ks):
            raise ConfigError(f"k and ks must be positive, got k={self.k} ks={self.ks}")


def run(cfg: Config) -> dict[str, Any]:
    """Evaluate, draw, write and log the report; returns its metrics and paths."""
    if not (cfg.input and cfg.model and cfg.query):
        raise ConfigError("input, model and query are required (a dataset, a model, an image)")
    check_output_dir(cfg.output)
    browser = find_browser() if cfg.pdf else ""
    store = tracking_uri(cfg.tracking_uri)
    model = ModelRef.parse(cfg.model).pinned(store).uri  # an alias: the version it names now
    run_info = model_run(model, store)
    measured = evaluate.measure(
        evaluate.Config(
            input=cfg.input,
            query=cfg.query,
            model=model,
            positive_label=cfg.positive_label,
            ks=cfg.ks,
            batch_size=cfg.batch_size,
            latency_repeats=cfg.latency_repeats,
            tracking_uri=store,
        )
    )
    items = read_items(cfg.input, measured.ids)
    assert measured.query is not None  # query is required above
    order = rank(measured.query, measured.vectors)[0]
    thumbs = Thumbnails(cfg.input)
    evidence = Evidence(
        evaluation=measured.result,
        items=items,
        vectors=measured.vectors,
        query_vector=measured.query,
        query_image=load_image(cfg.query),
        thumbnails=[thumbs.png(str(items["id"][i])) for i in order[: cfg.k]],
        run=run_info,
    )
    with staged_dir(cfg.output, overwrite=cfg.overwrite) as out:
        metrics = write_report(
            out,
            evidence,
            title=cfg.title,
            query_name=Path(cfg.query).name,
            positive_label=cfg.positive_label,
            k=cfg.k,
            ks=cfg.ks,
            label_names=cfg.label_names,
            settings=asdict(cfg),
        )
        if browser:
            html_to_pdf(out / "report.html", out / "report.pdf", browser)
    logged, not_logged = "", "not logged to MLflow (log=false)"
    if cfg.log and run_info.run_id:
        RunLogger(store).attach(run_info.run_id).log_artifacts(cfg.output, "report")
        logged = f"runs:/{run_info.run_id}/report"
    elif cfg.log:
        not_logged = "not logged to MLflow (no training run known for this model)"
    return {
        **metrics,
        "output": cfg.output,
        "logged": logged,
        "not_logged": not_logged,
        "pdf": bool(browser),
    }


def summarize(s: dict[str, Any]) -> str:
    """Short terminal summary."""
    lines = [
        f"query AP {s['query_ap']:.3f}  leave-one-out mAP {s['map']:.3f}  "
        f"{s['frames']} frames, {s['positives']} positives, "
        f"{s['seconds_per_query'] * 1e3:.1f} ms per query",
        f"wrote {s['output']}/report.{'pdf' if s['pdf'] else 'html'} and the report set",
    ]
    if s["trained_on_this_dataset"]:
        lines.append("note: the model trained on this corpus; these scores are not held-out")
    lines.append(f"logged to MLflow {s['logged']}" if s["logged"] else s["not_logged"])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek report") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
