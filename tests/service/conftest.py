"""A small searchable corpus for the service tests: a labelled dataset of 60 frames, its raw
pixel vectors (8×8, the model ``pixels``), and a 2-shard index of them (built without Ray)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from echoseek.baseline import pixel_embed
from echoseek.data.dataset import decode_png, iter_batches, read_descriptor
from echoseek.data.vectors import write_vectors
from echoseek.index import build_index, choose_params
from tests.datasets import ingested_stack, random_stack

PIXELS = 8
FRAMES = 60


@pytest.fixture(scope="session")
def service_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("service")
    return ingested_stack(tmp, random_stack(24, 20, FRAMES, seed=3), FRAMES, shard_size=25)


def pixel_vectors(dataset: Path, out: Path) -> Path:
    rows = [r for b in iter_batches(dataset) for r in b.to_pylist()]
    vectors = pixel_embed([decode_png(r["image"]) for r in rows], PIXELS)
    meta = {
        "label": [r["label"] for r in rows],
        "frame_index": [r["frame_index"] for r in rows],
        "source": [r["source"] for r in rows],
    }
    sha = read_descriptor(dataset)["sha256"]
    write_vectors(
        out,
        [([r["id"] for r in rows], vectors, meta)],
        dim=PIXELS * PIXELS,
        model_uri="pixels",
        extra={"dataset_sha256": sha},
    )
    return out


def random_model(path: Path, seed: int = 0) -> Path:
    """A randomly initialised 64-dimensional encoder saved as a model directory."""
    import torch

    from echoseek.models.artifact import ModelMeta, build_model, save_model

    meta = ModelMeta(
        small_stem=True, head_dim=PIXELS * PIXELS, head_hidden=None, input_size=(16, 16)
    )
    torch.manual_seed(seed)
    save_model(build_model(meta), path, meta)
    return path


def publish_model_version(dataset: Path, model: Path, root: Path, work: Path) -> str:
    """Embed ``dataset`` with ``model`` and publish the vectors as a new version of ``root``
    (a 2-shard IVF index whose manifest names ``model``); its version id."""
    from echoseek.embedding import build_embedder
    from echoseek.index.publish import read_latest

    rows = [r for b in iter_batches(dataset) for r in b.to_pylist()]
    vectors = build_embedder(str(model), PIXELS)([decode_png(r["image"]) for r in rows])
    meta = {key: [r[key] for r in rows] for key in ("label", "frame_index", "source")}
    write_vectors(work, [([r["id"] for r in rows], vectors, meta)], dim=64, model_uri=str(model))
    params = choose_params(FRAMES, PIXELS * PIXELS, nlist=4, train_size=FRAMES)
    build_index(work, root, params, num_shards=2, use_ray=False)
    return read_latest(root)


@pytest.fixture(scope="session")
def service_index(service_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index root with one published 2-shard IVF version of the pixel vectors."""
    tmp = tmp_path_factory.mktemp("service_index")
    vectors = pixel_vectors(service_dataset, tmp / "vectors")
    params = choose_params(FRAMES, PIXELS * PIXELS, nlist=4, train_size=FRAMES)
    build_index(vectors, tmp / "index", params, num_shards=2, use_ray=False)
    return tmp / "index"


@pytest.fixture
def index_root_copy(service_index: Path, tmp_path: Path) -> Path:
    """A private copy for tests that publish or corrupt versions."""
    shutil.copytree(service_index, tmp_path / "index")
    return tmp_path / "index"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def frame(dataset: Path, index: int) -> np.ndarray:
    rows = [r for b in iter_batches(dataset) for r in b.to_pylist()]
    return decode_png(rows[index]["image"])
