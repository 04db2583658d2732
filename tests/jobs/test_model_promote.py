"""`echoseek model promote` against a real MLflow registry (sqlite): the first model becomes
@champion, a better one replaces it, a worse one does not, data a model trained on is refused,
and an alias is pinned to its version wherever a model URI is recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from echoseek.cli import main as cli
from echoseek.data.dataset import read_descriptor
from echoseek.embedding import build_embedder
from echoseek.jobs import evaluate, index_build
from echoseek.models.artifact import ModelMeta, build_model, save_model
from tests.datasets import ingested_stack, random_stack

NAME = "phantom-search"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A training set, a held-out set, and two models each logged by its own training run."""
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("promote")
    (tmp / "train").mkdir()
    (tmp / "heldout").mkdir()
    train = ingested_stack(tmp / "train", random_stack(16, 16, 20, seed=1), 20, 10)
    heldout = ingested_stack(tmp / "heldout", random_stack(16, 16, 30, seed=2), 30, 16)
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(store)
    exp = client.create_experiment("train", artifact_location=(tmp / "art").as_uri())
    models = []
    for seed in (0, 1):
        run = client.create_run(exp, run_name=f"finetune-{seed}")
        client.set_tag(run.info.run_id, "dataset_sha256", read_descriptor(train)["sha256"])
        torch.manual_seed(seed)
        meta = ModelMeta(small_stem=True, head_dim=8, head_hidden=16, input_size=(16, 16),
                         extra={"mlflow_run_id": run.info.run_id})  # fmt: skip
        save_model(build_model(meta), tmp / f"model{seed}", meta)
        client.log_artifacts(run.info.run_id, str(tmp / f"model{seed}"), "model")
        client.set_terminated(run.info.run_id)
        models.append(tmp / f"model{seed}")
    # scored independently of the job, with the same protocol: which one is better here
    maps = [
        evaluate.run(evaluate.Config(input=str(heldout), model=str(m), output=str(tmp / f"e{i}"),
                                     latency_repeats=1))["leave_one_out"]["map"]
        for i, m in enumerate(models)
    ]  # fmt: skip
    assert maps[0] != maps[1]
    worse, better = models if maps[0] < maps[1] else models[::-1]
    return {"store": store, "train": train, "heldout": heldout, "worse": worse,
            "better": better, "maps": dict(zip(models, maps, strict=True))}  # fmt: skip


def promote(setup: dict[str, Any], model: Any, **extra: Any) -> int:
    values = {"name": NAME, "model": model, "input": setup["heldout"],
              "tracking_uri": setup["store"], **extra}  # fmt: skip
    return cli(["model", "promote", *(f"{k}={v}" for k, v in values.items())])


def versions(store: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    found = MlflowClient(store, registry_uri=store).search_model_versions(f"name = '{NAME}'")
    return sorted(v.version for v in found)


def aliases(store: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    aliases = MlflowClient(store, registry_uri=store).get_registered_model(NAME).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def test_promotion_only_when_the_candidate_beats_the_champion(
    setup: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.tracking import MlflowClient

    store = setup["store"]
    client = MlflowClient(store, registry_uri=store)
    assert promote(setup, setup["worse"]) == 0  # no champion yet: the first one is it
    assert aliases(store) == {"candidate": "1", "champion": "1"}
    v1 = client.get_model_version(NAME, "1")
    assert v1.tags["dataset_sha256"] == read_descriptor(setup["train"])["sha256"]  # lineage

    assert promote(setup, setup["better"]) == 0
    assert aliases(store) == {"candidate": "2", "champion": "2"}
    assert "promoted: models:/phantom-search@champion -> version 2" in capsys.readouterr().out
    # both scored in the same run, the comparison logged
    exp = client.get_experiment_by_name("echoseek-registry")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    metrics, tags = runs[0].data.metrics, runs[0].data.tags
    assert metrics["candidate_map"] == pytest.approx(setup["maps"][setup["better"]])
    assert metrics["champion_map"] == pytest.approx(setup["maps"][setup["worse"]])
    assert tags["decision"] == "promoted"

    assert promote(setup, setup["worse"]) == 0  # the same run again: version 1, not a new one
    assert aliases(store) == {"candidate": "1", "champion": "2"}
    assert "kept: @champion stays version 2" in capsys.readouterr().out
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2

    assert promote(setup, f"models:/{NAME}/2") == 0
    assert "version 2 is already @champion" in capsys.readouterr().out

    # an alias is recorded as the version it names: an index never claims the wrong model
    assert build_embedder(f"models:/{NAME}@champion", tracking=store).uri == f"models:/{NAME}/2"
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(64, 8)).astype("float32"))
    built = index_build.run(
        index_build.Config(input=str(tmp_path / "v.npy"), output=str(tmp_path / "index"),
                           model_uri=f"models:/{NAME}@champion", tracking_uri=store,
                           build=index_build.BuildOptions(use_ray=False))
    )  # fmt: skip
    manifest = json.loads((tmp_path / "index" / built["version"] / "manifest.json").read_text())
    assert manifest["model_uri"] == f"models:/{NAME}/2"
    assert manifest["model_tracking_uri"] == store  # where that URI resolves

    # a service started with no tracking store finds the index's model in the recorded one
    from echoseek.service.backend import make_embedder
    from echoseek.service.config import ServiceConfig
    from echoseek.service.versions import load_served

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no mlflow/ store beside the working dir
    served = load_served(tmp_path / "index", "latest")
    embedder = make_embedder(ServiceConfig(index=str(tmp_path / "index")), served)
    assert embedder.uri == f"models:/{NAME}/2"


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("better", {"input": "train"}, "trained on this dataset; promotion needs data"),
        ("models:/other-model/1", {}, "models:/other-model/1: cannot fetch from MLflow"),
        ("untracked", {}, "no MLflow run recorded for this model"),
        ("better", {"metric": "query_ap"}, "metric=query_ap needs query="),
    ],
)
def test_refusals_name_the_problem_and_change_nothing(
    setup: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    extra: dict[str, str],
    message: str,
) -> None:
    if model == "untracked":
        meta = ModelMeta(small_stem=True, head_dim=8, head_hidden=16, input_size=(16, 16))
        model = str(save_model(build_model(meta), tmp_path / "m", meta))
    # the registry holds a champion whichever test runs first
    before = aliases(setup["store"]) if promote(setup, setup["worse"]) == 0 else {}
    registered = versions(setup["store"])
    capsys.readouterr()
    values = {k: setup.get(v, v) for k, v in extra.items()}
    assert promote(setup, setup.get(model, model), **values) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert aliases(setup["store"]) == before and versions(setup["store"]) == registered
