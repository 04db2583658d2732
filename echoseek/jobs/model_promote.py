"""Register a model as ``@candidate`` and promote it to ``@champion`` when it beats the champion.

    echoseek model promote name=echoseek model=work/model input=work/heldout
    echoseek model promote name=echoseek model=models:/echoseek/7 input=work/heldout \
        query=work/phantom/invivo.png metric=query_ap

``model`` is a model directory (its ``model.json`` names the run that trained it), a
``runs:/ID/model`` or a ``models:/NAME/VERSION`` URI. The candidate and the current champion are
both scored in one MLflow run (experiment ``echoseek-registry``) on ``input``, a labelled
dataset neither trained on (refused otherwise), with the evaluate protocol: ``map`` is the
leave-one-out mAP, ``query_ap`` the AP of ``query``. The candidate becomes ``@champion`` when
its score exceeds the champion's by more than ``min_gain``, or when there is no champion.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from echoseek.data.dataset import read_descriptor
from echoseek.errors import ConfigError
from echoseek.jobs import evaluate
from echoseek.jobs.runner import run_job
from echoseek.registry import (
    CANDIDATE,
    CHAMPION,
    alias_version,
    check_held_out,
    register,
    set_alias,
)
from echoseek.tracking import RunLogger, check_reachable, tracking_uri

METRICS = ("map", "query_ap")


@dataclass
class Config:
    """Options of ``echoseek model promote``."""

    input: str = ""  # held-out labelled dataset both models are scored on
    output: str | None = None  # unused: the registry and the MLflow run are the outputs
    model: str = ""  # the candidate: model dir, runs:/ID/model or models:/NAME/VERSION
    name: str = "echoseek"  # registered model name
    query: str | None = None  # query image (metric=query_ap)
    positive_label: int | None = 1  # None: every labelled item queries its own class
    metric: str = "map"  # map (leave-one-out) or query_ap
    min_gain: float = 0.0  # the candidate must beat the champion by more than this
    tracking_uri: str = ""  # MLflow store and registry (default $MLFLOW_TRACKING_URI, ./mlflow)
    experiment: str = "echoseek-registry"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"metric: must be one of {list(METRICS)}, got '{self.metric}'")
        if self.metric == "query_ap" and not self.query:
            raise ConfigError("metric=query_ap needs query= (the query image)")
        if self.min_gain < 0:
            raise ConfigError(f"min_gain must be >= 0, got {self.min_gain}")


def score(cfg: Config, uri: str, store: str) -> float:
    """``cfg.metric`` of the model ``uri`` on ``cfg.input``."""
    found = evaluate.measure(
        evaluate.Config(
            input=cfg.input,
            query=cfg.query,
            model=uri,
            latency_repeats=1,
            positive_label=cfg.positive_label,
            tracking_uri=store,
        )
    ).result
    return float(found["leave_one_out"]["map"] if cfg.metric == "map" else found["query"]["ap"])


def run(cfg: Config) -> dict[str, Any]:
    """Register, score both, move the aliases; returns the decision."""
    if not (cfg.input and cfg.model and cfg.name):
        raise ConfigError("input, model and name are required")
    store = tracking_uri(cfg.tracking_uri)
    check_reachable(store)
    sha = read_descriptor(cfg.input)["sha256"]
    champion = alias_version(cfg.name, CHAMPION, store)
    check_held_out(cfg.input, sha, cfg.model, champion, store)  # before anything is registered
    candidate = register(cfg.model, cfg.name, store)
    set_alias(cfg.name, CANDIDATE, candidate.version, store)
    logger = RunLogger(store, cfg.experiment)
    logger.start(
        f"promote-{cfg.name}-v{candidate.version}-{time.strftime('%Y%m%d-%H%M%S')}",
        {
            **asdict(cfg),
            "dataset_sha256": sha,
            "candidate_version": candidate.version,
            "champion_version": champion.version if champion else "",
        },
        {"job": "model_promote", "registered_model": cfg.name},
    )
    scores = {"candidate": score(cfg, f"models:/{cfg.name}/{candidate.version}", store)}
    same = champion is not None and champion.version == candidate.version
    if champion is not None and not same:
        scores["champion"] = score(cfg, f"models:/{cfg.name}/{champion.version}", store)
    promoted = not same and scores["candidate"] > scores.get("champion", -1.0) + cfg.min_gain
    if promoted:
        set_alias(cfg.name, CHAMPION, candidate.version, store)
    logger.log_metrics({f"{role}_{cfg.metric}": v for role, v in scores.items()}, step=0)
    logger.set_tags({"decision": "promoted" if promoted else "kept"})
    logger.end()
    return {
        "name": cfg.name,
        "candidate": candidate.version,
        "champion_before": champion.version if champion else None,
        "champion": candidate.version if promoted else champion.version if champion else None,
        "promoted": promoted,
        "metric": cfg.metric,
        "scores": scores,
        "dataset": cfg.input,
        "run_id": logger.run_id,
    }


def summarize(s: dict[str, Any]) -> str:
    """One line per fact: the scores, the decision, where @champion points."""
    name, m, sc = s["name"], s["metric"], s["scores"]
    lines = [
        f"candidate models:/{name}/{s['candidate']}: {m} {sc['candidate']:.4f} on {s['dataset']}"
    ]
    if "champion" in sc:
        lines.append(f"champion  models:/{name}/{s['champion_before']}: {m} {sc['champion']:.4f}")
    if s["promoted"]:
        lines.append(f"promoted: models:/{name}@champion -> version {s['champion']}")
    elif s["champion_before"] == s["candidate"]:
        lines.append(f"kept: version {s['candidate']} is already @champion")
    else:
        lines.append(f"kept: @champion stays version {s['champion']} (the candidate did not "
                     "beat it by more than min_gain)")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "echoseek model promote") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
