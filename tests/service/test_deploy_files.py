"""Every Serve YAML in serve/ passes Ray Serve's own config schema and describes the app
that ``echoseek.service.app:build`` composes (its args are ServiceConfig fields, its
deployment names the ones the builder creates); the RayService embeds serve/cluster.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from echoseek.config import from_dict
from echoseek.jobs.serve import serve_config_args
from echoseek.service.auth import load_tokens, parse_tokens
from echoseek.service.config import ServiceConfig, is_local
from echoseek.service.ingress import FAST_ENV

SERVE = Path(__file__).resolve().parents[2] / "serve"
RAYSERVICE = SERVE / "rayservice.yaml"


def serve_configs() -> dict[str, dict[str, Any]]:
    out = {
        p.name: yaml.safe_load(p.read_text())
        for p in sorted(SERVE.glob("*.yaml"))
        if p != RAYSERVICE
    }
    service = yaml.safe_load(RAYSERVICE.read_text())
    out["rayservice.yaml serveConfigV2"] = yaml.safe_load(service["spec"]["serveConfigV2"])
    return out


CONFIGS = serve_configs()


def test_the_deploy_files_are_there() -> None:
    assert {"local.yaml", "cluster.yaml", "rayservice.yaml serveConfigV2"} <= set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_serve_schema_and_app_agree(name: str) -> None:
    data = CONFIGS[name]
    schema = ServeDeploySchema.model_validate(data)  # Ray Serve's own validation
    (app,) = schema.applications
    assert app.import_path == "echoseek.service.app:build"
    cfg = from_dict(ServiceConfig, app.args)
    groups = 0 if cfg.colocate else cfg.shard_groups
    assert groups > 0 or cfg.colocate, "deploy files name their shard groups (or colocate)"
    built = {"SearchIngress", "Embedder"} | {f"ShardSearcher{g}" for g in range(groups)}
    listed = {d.name for d in app.deployments}
    assert listed == built, f"{name}: deployments {sorted(listed ^ built)} do not match"
    host = data["http_options"]["host"]
    assert host == cfg.host
    if not is_local(host):
        assert cfg.tokens_file, f"{name}: binds {host} without tokens"
    ingress = next(d for d in app.deployments if d.name == "SearchIngress")
    assert ingress.user_config == {"version": "latest"}  # the in-place swap knob


def test_rayservice_serves_the_cluster_file() -> None:
    assert CONFIGS["rayservice.yaml serveConfigV2"] == CONFIGS["cluster.yaml"]
    gpu = CONFIGS["cluster.yaml"]["applications"][0]["deployments"]
    assert next(d for d in gpu if d["name"] == "Embedder")["ray_actor_options"]["num_gpus"] == 1


def test_echoseek_serve_reads_a_serve_file_as_overrides() -> None:
    words = serve_config_args(str(SERVE / "local.yaml"))
    assert words is not None
    assert 'index="work/demo/index"' in words and "limits.max_k=1000" in words
    assert words[-1] == f"serve_config={SERVE / 'local.yaml'}"
    assert serve_config_args(str(SERVE.parent / "tune" / "loss.local.yaml")) is None


def test_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# team tokens\n" + "a" * 20 + ":admin\n\n" + "s" * 20 + ":search  # ci\n")
    tokens = load_tokens(str(path), {})
    assert tokens.scope_of("a" * 20) == "admin" and tokens.scope_of("s" * 20) == "search"
    assert tokens.allows("Bearer " + "s" * 20, "admin") is False
    assert tokens.allows("Bearer " + "a" * 20, "search") is True
    assert tokens.allows("Basic " + "a" * 20, "search") is None
    assert parse_tokens("", "x") == []


def test_cluster_nodes_start_ray_with_the_haproxy_ingress() -> None:
    """Serve reads the ingress switch from each node's environment when Ray starts there: every
    RayService container and every ``ray start`` of cluster.yaml sets both variables."""
    service = yaml.safe_load(RAYSERVICE.read_text())["spec"]["rayClusterConfig"]
    groups = [service["headGroupSpec"], *service["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            assert {k: env.get(k) for k in FAST_ENV} == FAST_ENV, container["name"]
    launcher = yaml.safe_load((SERVE.parent / "cluster.yaml").read_text())
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in launcher[key] if "ray start" in c)
        assert all(f"{k}=1" in start.split("ray start")[0] for k in FAST_ENV), key
