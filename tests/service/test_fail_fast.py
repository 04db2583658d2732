"""A service that cannot start says why within seconds instead of waiting out its timeout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from echoseek.errors import EchoseekError
from echoseek.service.config import ServiceConfig
from echoseek.service.run import start_service
from tests.service.conftest import PIXELS, free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("from_config", [True, False], ids=["serve-config", "plain"])
def test_a_replica_that_cannot_start_is_reported_by_name_and_cause(
    ray_session: Any, service_index: Path, service_dataset: Path, tmp_path: Path, from_config: bool
) -> None:
    """The Embedder's constructor cannot load its model: Serve would retry it forever; the
    start fails once Serve marks the deployment failed, naming the deployment and the error,
    whether deployed from a Serve config (``echoseek serve serve/local.yaml``) or not."""
    cfg = ServiceConfig(
        index=str(service_index),
        dataset=str(service_dataset),
        model=str(tmp_path / "no-such-model"),
        pixel_size=PIXELS,
        port=free_port(),
    )
    started = time.monotonic()
    with pytest.raises(EchoseekError, match=r"cannot start: Embedder: .*no-such-model"):
        start_service(cfg, serve_config=str(ROOT / "serve" / "local.yaml") if from_config else "")
    assert time.monotonic() - started < 120  # the readiness timeout is 300 s
    import httpx

    with pytest.raises(httpx.HTTPError):  # and nothing is left answering on the port
        httpx.get(f"http://127.0.0.1:{cfg.port}/healthz", timeout=2)


def test_a_serve_config_the_app_cannot_build_is_reported_at_once(
    ray_session: Any, service_index: Path, tmp_path: Path
) -> None:
    """A Serve config naming a deployment the application does not compose (a shard group
    beyond ``shard_groups``): Serve fails the application's build; the start names it."""
    import yaml

    data = yaml.safe_load((ROOT / "serve" / "local.yaml").read_text())
    deployments = data["applications"][0]["deployments"]
    deployments.append({**deployments[-1], "name": "ShardSearcher7"})
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(data))
    cfg = ServiceConfig(
        index=str(service_index), model="pixels", pixel_size=PIXELS, port=free_port()
    )
    started = time.monotonic()
    with pytest.raises(
        EchoseekError, match=r"cannot start: application echoseek: .*ShardSearcher7"
    ):
        start_service(cfg, serve_config=str(tmp_path / "serve.yaml"))
    assert time.monotonic() - started < 60
