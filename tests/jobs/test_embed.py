"""The embed job: Ray Data actor pool -> vectors artifact, for the baseline and a saved model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from echoseek.baseline import pixel_embed
from echoseek.cli import main as cli
from echoseek.data.dataset import decode_png, iter_batches, shard_paths
from echoseek.data.frames import to_chw
from echoseek.data.vectors import iter_vector_batches, open_vectors, read_descriptor
from echoseek.embedding import ModelEmbedder
from echoseek.embedding.stream import calls_per_actor
from echoseek.jobs import embed
from echoseek.models.artifact import ModelMeta, build_model, save_model
from tests.datasets import ingested_stack, random_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("embed")
    return ingested_stack(tmp, random_stack(20, 20, 23), labelled=20, shard_size=7)


def dataset_images(path: Path) -> dict[str, np.ndarray]:
    return {r["id"]: decode_png(r["image"]) for b in iter_batches(path) for r in b.to_pylist()}


def read_all(path: Path) -> tuple[list[str], np.ndarray, dict[str, list]]:
    ids, vecs, meta = [], [], {"label": [], "frame_index": []}
    for b in iter_vector_batches(path):
        ids += b.ids
        vecs.append(b.vectors)
        for k in meta:
            meta[k] += b.metadata[k]
    return ids, np.concatenate(vecs), meta


def test_pixels_embed_matches_baseline_and_keeps_metadata(
    dataset: Path, tmp_path: Path, ray_session: object
) -> None:
    out = embed.run(embed.Config(input=str(dataset), output=str(tmp_path / "v"), pixel_size=8))
    assert out["count"] == 23 and out["dim"] == 64 and out["images_per_s"] > 0
    assert open_vectors(tmp_path / "v").model_uri == "pixels"
    ids, vecs, meta = read_all(tmp_path / "v")
    images = dataset_images(dataset)
    assert sorted(ids) == sorted(images)
    expected = pixel_embed([images[i] for i in ids], size=8)
    np.testing.assert_allclose(vecs, expected, rtol=1e-6, atol=1e-7)
    by_id = dict(zip(ids, zip(meta["label"], meta["frame_index"], strict=True), strict=True))
    assert by_id["d:000003"] == (1, 3) and by_id["d:000022"] == (None, 22)
    # the actors wrote one part per dataset row group, listed in the dataset's row order
    assert ids == [r["id"] for b in iter_batches(dataset) for r in b.to_pylist()]
    desc = read_descriptor(tmp_path / "v")
    groups = [g for f in shard_paths(dataset) for g in range(pq.ParquetFile(f).num_row_groups)]
    assert [f["file"] for f in desc["files"]] == [
        f"part-{i:05d}.parquet" for i in range(len(groups))
    ]
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == sorted(
        [*(f["file"] for f in desc["files"]), "vectors.json"]
    )  # no temporaries left


def test_model_embed_equals_direct_forward(
    dataset: Path, tmp_path: Path, ray_session: object
) -> None:
    torch.manual_seed(0)
    meta = ModelMeta(
        backbone="resnet18",
        in_channels=1,
        small_stem=True,
        head_dim=16,
        head_hidden=32,
        input_size=(16, 16),
    )
    save_model(build_model(meta), tmp_path / "model", meta)
    out = embed.run(
        embed.Config(
            input=str(dataset),
            model=str(tmp_path / "model"),
            output=str(tmp_path / "v"),
        )
    )
    assert out["dim"] == 16
    ids, vecs, _ = read_all(tmp_path / "v")
    images = dataset_images(dataset)
    assert sorted(ids) == sorted(images)  # 4 row groups in one actor call, each row once
    direct = ModelEmbedder(str(tmp_path / "model"), device="cpu")([images[i] for i in ids])
    np.testing.assert_allclose(vecs, direct, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)


def test_rgb_to_gray_conversion_matches_pil() -> None:
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_allclose(to_chw(rgb, 1)[0].astype(int), gray.astype(int), atol=1)
    assert to_chw(gray, 3).shape == (3, 5, 6)


def test_bad_model_path_is_a_clear_error(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(
        ["embed", f"input={dataset}", f"model={tmp_path / 'nope'}", f"output={tmp_path / 'v'}"]
    )
    assert code == 2
    assert "model directory not found" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_embed_from_an_mlflow_registered_model(
    dataset: Path, tmp_path: Path, ray_session: object
) -> None:
    """Actors resolve models:/ against the store named in the config, not their own cwd."""
    from mlflow.tracking import MlflowClient

    from echoseek.tracking import register_model_dir

    meta = ModelMeta(  # 16 px: the default 224 px through a small stem takes a minute on CPU
        backbone="resnet18", in_channels=1, small_stem=True, head_dim=8, input_size=(16, 16)
    )
    torch.manual_seed(1)
    save_model(build_model(meta), tmp_path / "model", meta)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    exp = client.create_experiment("embed", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    client.log_artifacts(run_id, str(tmp_path / "model"), "model")
    version = register_model_dir(run_id, "model", "echoseek-embed", tracking=store)
    uri = f"models:/echoseek-embed/{version}"
    out = embed.run(
        embed.Config(input=str(dataset), model=uri, tracking_uri=store, output=str(tmp_path / "v"))
    )
    assert out["model_uri"] == uri
    assert out["model_tracking_uri"] == store  # the index built from these vectors records it
    ids, vecs, _ = read_all(tmp_path / "v")
    images = dataset_images(dataset)
    direct = ModelEmbedder(str(tmp_path / "model"), device="cpu")([images[i] for i in ids])
    np.testing.assert_allclose(vecs, direct, rtol=1e-4, atol=1e-5)


def test_embed_on_the_command_line_prints_echoseek_lines_only(
    dataset: Path, tmp_path: Path
) -> None:
    """A fresh local Ray in a child process, as a user runs it: no Ray line on the terminal
    (its core worker warned about the actor pool's constructor arguments before)."""
    import os
    import subprocess
    import sys

    meta = ModelMeta(small_stem=True, head_dim=8, head_hidden=None, input_size=(16, 16))
    save_model(build_model(meta), tmp_path / "model", meta)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-m", "echoseek.cli", "embed", f"input={dataset}",
         f"model={tmp_path / 'model'}", f"output={tmp_path / 'v'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("embedded 23 images"), done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert [line.split(" [")[0] for line in lines] == ["embed"], done.stderr  # the progress bar


@pytest.mark.parametrize(
    ("cpus", "gpus", "calls"),
    [(2, 0, 2), (64, 0, 2), (16, 1, 16), (16, 2, 8), (128, 8, 16), (256, 2, 16), (4, 4, 2)],
)
def test_gpu_actors_decode_on_the_cpus_each_gpu_has(cpus: float, gpus: float, calls: int) -> None:
    assert calls_per_actor(cpus, gpus) == calls


def test_embed_and_index_build_from_and_to_an_object_store(
    dataset: Path, tmp_path: Path, bucket: str, ray_session: object
) -> None:
    """A dataset in a real S3-compatible store embedded into the store (the actors upload their
    parts; the descriptor is written last), then indexed from there into the store on the
    command line: the same vectors as a local embed of the same dataset."""
    from echoseek import object_store as store
    from echoseek.index import read_latest
    from tests.index.test_object_store_build import upload_tree

    source = upload_tree(dataset, store.join(bucket, "dataset"))
    vectors = store.join(bucket, "vectors")
    out = embed.run(embed.Config(input=source, output=vectors, pixel_size=8))
    assert out["count"] == 23 and out["output"] == vectors
    embed.run(embed.Config(input=str(dataset), output=str(tmp_path / "v"), pixel_size=8))
    got, want = read_all(vectors), read_all(tmp_path / "v")  # type: ignore[arg-type]
    assert got[0] == want[0] and got[2] == want[2]
    np.testing.assert_array_equal(got[1], want[1])
    files = store.list_files(vectors)
    listed = [f["file"] for f in read_descriptor(vectors)["files"]]
    assert files == sorted([*listed, "vectors.json"]) and listed[0].startswith("parts-")

    root = store.join(bucket, "index")
    args = ["index", "build", f"input={vectors}", f"output={root}", "index.kind=flat"]
    assert cli(args) == 0
    assert store.is_file(store.join(root, read_latest(root), "manifest.json"))
