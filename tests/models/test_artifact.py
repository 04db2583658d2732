"""The model artifact: round trip, atomic replace, clear errors, no unpickling."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from echoseek.errors import ConfigError, InputError
from echoseek.models import ModelMeta, build_model, load_model, save_model

META = ModelMeta(
    backbone="resnet18",
    in_channels=1,
    small_stem=True,
    pooling="gem",
    head_dim=16,
    head_hidden=32,
    input_size=(32, 32),
    mean=(0.2,),
    std=(0.3,),
    distance="sqeuclidean",
    extra={"method": "simsiam"},
)


def trained_model(meta: ModelMeta = META) -> torch.nn.Module:
    """A model whose weights and BN statistics differ from a fresh build."""
    torch.manual_seed(0)
    model = build_model(meta)
    model(torch.randn(8, meta.in_channels, 16, 16))  # moves the BN running statistics
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def images() -> torch.Tensor:
    return torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return trained_model()


@pytest.fixture(scope="module")
def saved(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("artifact") / "model", META)


def copy_of(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "model"))


def test_round_trip_gives_identical_outputs(model: torch.nn.Module, saved: Path) -> None:
    out = saved
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.pt"]
    loaded, meta = load_model(out)
    assert not loaded.training
    assert meta == META and meta.embedding_dim == 16
    torch.testing.assert_close(loaded(images()), model(images()), rtol=0, atol=0)
    document = json.loads((out / "model.json").read_text())
    assert document["format_version"] == 1 and document["embedding_dim"] == 16
    assert document["input_size"] == [32, 32] and document["mean"] == [0.2]
    assert load_model(out / "model.json")[1] == META


def test_round_trip_without_head(tmp_path: Path) -> None:
    meta = ModelMeta(in_channels=3, mean=(0.5,) * 3, std=(0.2,) * 3, head_dim=None)
    model = trained_model(meta)
    loaded, got = load_model(save_model(model, tmp_path / "m", meta))
    assert got.embedding_dim == 512
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_corrupt_weights_raise_input_error(saved: Path, tmp_path: Path) -> None:
    out = copy_of(saved, tmp_path)
    (out / "model.pt").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match=r"model\.pt"):
        load_model(out)
    (out / "model.pt").unlink()
    with pytest.raises(InputError, match=r"model\.pt: not found"):
        load_model(out)


class Payload:
    """A pickle that runs code when loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_loading_never_unpickles(saved: Path, tmp_path: Path) -> None:
    out = copy_of(saved, tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"conv1.weight": torch.zeros(1), "x": Payload(marker)}, out / "model.pt")
    with pytest.raises(InputError, match=r"model\.pt"):
        load_model(out)
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    torch.load(out / "model.pt", weights_only=False)
    assert marker.exists()


def test_weights_of_another_architecture_are_rejected(saved: Path, tmp_path: Path) -> None:
    out = copy_of(saved, tmp_path)
    other = build_model(ModelMeta(in_channels=1, small_stem=True, head_dim=8))
    torch.save(other.state_dict(), out / "model.pt")
    with pytest.raises(InputError, match=r"model\.pt: does not match model\.json"):
        load_model(out)


def test_model_must_match_meta_when_saving(model: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ModelMeta"):
        save_model(model, tmp_path / "model", ModelMeta(in_channels=1, head_dim=8))
    assert not (tmp_path / "model").exists()
    assert list(tmp_path.iterdir()) == []  # no staging leftovers


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"backbone": "vgg16"}, "backbone"),
        ({"format_version": 9}, "format_version"),
        ({"in_channels": "one"}, "in_channels"),
        ({"pooling": "max"}, "pooling"),
        ({"mean": [0.1, 0.2]}, "mean/std"),
        ({"embedding_dim": 64}, "embedding_dim"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_model_json_names_the_file_and_field(
    saved: Path, tmp_path: Path, edit: dict[str, Any], match: str
) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.pt").symlink_to(saved / "model.pt")
    document = json.loads((saved / "model.json").read_text())
    (out / "model.json").write_text(json.dumps({**document, **edit}))
    with pytest.raises(InputError, match=rf"model\.json: .*{match}"):
        load_model(out)


def test_missing_or_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model directory not found"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"model\.json: not found"):
        load_model(tmp_path / "empty")
    (tmp_path / "empty" / "model.json").write_text("{not json")
    with pytest.raises(InputError, match="not readable JSON"):
        load_model(tmp_path / "empty")
    with pytest.raises(InputError, match="remote model paths are not supported"):
        load_model("s3://bucket/model")


def test_loads_from_mlflow_run_and_registry(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model dir logged to a real local MLflow store loads by runs:/ and models:/ URIs."""
    from mlflow.tracking import MlflowClient

    from echoseek.tracking import register_model_dir

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = MlflowClient(store)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(saved), "model")
    client.set_terminated(run.info.run_id)
    version = register_model_dir(run.info.run_id, "model", "echoseek-test")

    expected, _ = load_model(saved)
    for uri in (f"runs:/{run.info.run_id}/model", f"models:/echoseek-test/{version}"):
        model, meta = load_model(uri)
        assert meta == load_model(saved)[1]
        for key, value in expected.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), (uri, key)

    with pytest.raises(InputError, match="models:/no-such-model/1: cannot fetch from MLflow"):
        load_model("models:/no-such-model/1")
    client.log_text(run.info.run_id, "x", "notes/readme.txt")
    with pytest.raises(InputError, match=r"no model\.json"):
        load_model(f"runs:/{run.info.run_id}/notes")


def test_existing_output_is_replaced_only_on_request(saved: Path, tmp_path: Path) -> None:
    target = copy_of(saved, tmp_path)
    model, _ = load_model(target)
    with pytest.raises(InputError, match="not empty"):
        save_model(model, target, META)
    meta = dataclasses.replace(META, distance="cosine")
    save_model(model, target, meta, overwrite=True)
    assert load_model(target)[1].distance == "cosine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
