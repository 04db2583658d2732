"""ModelRef: every accepted form, the refused ones, and alias pinning and resolution against a
real local MLflow sqlite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echoseek.errors import InputError
from echoseek.model_ref import ALIAS, LOCAL, PIXELS, RUN, VERSION, ModelRef


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pixels", ModelRef(PIXELS)),
        ("work/model", ModelRef(LOCAL, path="work/model")),
        ("/abs/model/model.json", ModelRef(LOCAL, path="/abs/model/model.json")),
        ("runs:/abc123/model", ModelRef(RUN, run_id="abc123", path="model")),
        ("runs:/abc123/a/b/", ModelRef(RUN, run_id="abc123", path="a/b")),
        ("runs:/abc123", ModelRef(RUN, run_id="abc123")),
        ("models:/enc/3", ModelRef(VERSION, name="enc", version="3")),
        ("models:/enc@champion", ModelRef(ALIAS, name="enc", alias="champion")),
    ],
)
def test_every_form_parses_and_prints_back(text: str, expected: ModelRef) -> None:
    ref = ModelRef.parse(text)
    assert ref == expected
    assert ModelRef.parse(ref.uri) == ref
    assert ref.in_mlflow == (ref.kind in (RUN, VERSION, ALIAS))
    assert ref.registered == (ref.kind in (VERSION, ALIAS))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "model: empty"),
        ("models:/", "expected models:/NAME/VERSION"),
        ("models:/enc", "expected models:/NAME/VERSION"),
        ("models:/enc/latest", "expected models:/NAME/VERSION"),
        ("models:/enc/3/extra", "expected models:/NAME/VERSION"),
        ("models:/enc@", "expected models:/NAME@ALIAS"),
        ("models:/@champion", "expected models:/NAME@ALIAS"),
        ("runs:/", "expected runs:/RUN_ID/PATH"),
        ("runs://model", "expected runs:/RUN_ID/PATH"),
        ("s3://bucket/model", "remote model paths are not supported"),
        ("mlflow-artifacts:/x/model", "remote model paths are not supported"),
    ],
)
def test_malformed_references_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ModelRef.parse(text)


def test_a_local_directory_resolves_and_names_its_recorded_run(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text(json.dumps({"extra": {"mlflow_run_id": "r1"}}))
    ref = ModelRef.parse(tmp_path / "m" / "model.json")
    assert ref.local_dir() == tmp_path / "m"
    assert ref.training_run() == "r1"
    assert ref.store("sqlite:///x.db") == "" and ref.pinned() is ref
    assert ModelRef.parse("rel/m").absolute().path == str(Path("rel/m").resolve())
    with pytest.raises(InputError, match="model directory not found"):
        ModelRef.parse(tmp_path / "nope").local_dir()
    assert ModelRef.parse("pixels").training_run() == ""


def test_aliases_pin_and_mlflow_references_resolve(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from echoseek.tracking import register_model_dir

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    client.log_artifacts(run_id, str(model), "model")
    client.log_text(run_id, "x", "notes/readme.txt")
    version = register_model_dir(run_id, "model", "enc", store)
    MlflowClient(store, registry_uri=store).set_registered_model_alias("enc", "champion", version)

    alias = ModelRef.parse("models:/enc@champion")
    assert alias.pinned(store) == ModelRef(VERSION, name="enc", version=version)
    assert alias.training_run(store) == run_id == alias.pinned(store).training_run(store)
    assert alias.store(store) == store
    for ref in (alias, ModelRef.parse(f"runs:/{run_id}/model")):
        local = ref.local_dir(store, tmp_path / "dl" / ref.kind)
        assert (local / "model.json").read_text() == "{}"
        assert local.is_relative_to(tmp_path / "dl" / ref.kind)
    assert ModelRef.parse(f"runs:/{run_id}/model").training_run(store) == run_id
    with pytest.raises(InputError, match=r"no model\.json"):
        ModelRef.parse(f"runs:/{run_id}/notes").local_dir(store, tmp_path / "n")
    with pytest.raises(InputError, match="models:/enc@nobody: cannot fetch from MLflow at"):
        ModelRef.parse("models:/enc@nobody").pinned(store)
    with pytest.raises(InputError, match="models:/other/1: cannot fetch from MLflow at"):
        ModelRef.parse("models:/other/1").local_dir(store, tmp_path / "o")
