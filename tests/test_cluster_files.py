"""The cluster files: ``cluster.yaml`` passes Ray's own cluster-launcher validation (as ``ray
up`` runs it), and every KubeRay ``RayJob`` names a job module and config the job accepts."""

from __future__ import annotations

import copy
import importlib.util
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RAYJOBS = sorted((ROOT / "kuberay").glob("rayjob-*.yaml"))


def launcher_config(data: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` checks: the config merged with the provider's defaults, then validated
    against ``ray-schema.json``."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(data))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation_with_a_cpu_head_and_autoscaling_gpu_workers() -> None:
    import ray

    data = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    cfg = launcher_config(data)
    nodes = cfg["available_node_types"]
    head = nodes[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [n for name, n in nodes.items() if name != cfg["head_node_type"]]
    assert any(n["resources"].get("GPU", 0) >= 1 for n in workers)
    assert all(n["min_workers"] == 0 < n["max_workers"] for n in workers)  # autoscaling
    # the index build's CPU nodes: 4 × 32 cores, the projection of BENCHMARKS.md
    builders = [n for n in workers if n["resources"].get("GPU", 0) == 0]
    assert [(n["resources"]["CPU"], n["max_workers"]) for n in builders] == [(32, 4)]
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert cfg["docker"]["image"] == f"rayproject/ray:{ray.__version__}-{py}-gpu"
    # the synced working dir is what every node installs, with the pinned constraints
    remote = next(dst for dst, src in cfg["file_mounts"].items() if src == ".")
    assert any(
        f"-c {remote}/constraints.txt" in c and f"-e {remote}" in c for c in cfg["setup_commands"]
    )
    # shared storage: mounted into every container where the cluster profiles write
    assert "-v /mnt/shared:/mnt/shared" in cfg["docker"]["run_options"]
    for profile in ("ray_jobs/pretrain.yaml", "ray_jobs/finetune.yaml", "indexing/cluster.yaml"):
        output = yaml.safe_load((ROOT / profile).read_text())["output"]
        assert output.startswith("/mnt/shared/"), profile


def test_rays_validation_refuses_a_misspelt_field() -> None:
    from jsonschema import ValidationError

    data = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    data["docker"]["pull_befor_run"] = data["docker"].pop("pull_before_run")
    with pytest.raises(ValidationError, match="'pull_befor_run' was unexpected"):
        launcher_config(data)


def job_config(entrypoint: str) -> tuple[str, Any]:
    """``python -m echoseek.jobs.NAME CONFIG [key=value ...]`` -> (NAME, the loaded config)."""
    from echoseek.config import load_config

    words = shlex.split(entrypoint)
    assert words[:2] == ["python", "-m"] and words[2].startswith("echoseek.jobs."), entrypoint
    module = words[2]
    assert importlib.util.find_spec(module) is not None, module
    config, overrides = ROOT / words[3], words[4:]
    assert config.is_file(), config
    job = importlib.import_module(module)
    return module.removeprefix("echoseek.jobs."), load_config(job.Config, config, overrides)


@pytest.mark.parametrize("path", RAYJOBS, ids=[p.stem for p in RAYJOBS])
def test_rayjob_runs_a_job_module_with_a_config_it_accepts(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    name, cfg = job_config(spec["entrypoint"])
    assert name.replace("_", "-") in path.stem
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["working_dir"] and env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http")
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == __import__("ray").__version__
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    groups = cluster["workerGroupSpecs"]
    limits = {g["groupName"]: g["template"]["spec"]["containers"][0]["resources"]["limits"]
              for g in groups}  # fmt: skip
    assert limits["gpu"]["nvidia.com/gpu"]
    assert all(g["minReplicas"] == 0 < g["maxReplicas"] for g in groups)
    outputs = [getattr(cfg, "output", ""), getattr(cfg, "input", "")]
    assert all(p.startswith(("/mnt/shared/", "s3://")) for p in outputs if p), outputs


def test_the_index_build_cluster_holds_a_fill_task_per_core() -> None:
    """The CPU group of the index build holds as many fill tasks (1 M rows, 128-d, the rule's
    PQ code) as it has cores, at the memory each task asks for."""
    from echoseek.index.build import fill_placement
    from echoseek.index.params import choose_params

    doc = yaml.safe_load((ROOT / "kuberay" / "rayjob-index-build.yaml").read_text())
    (cpu,) = [
        g for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "cpu"
    ]
    limits = cpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    cores, gib = int(limits["cpu"]), int(limits["memory"].removesuffix("Gi"))
    p = choose_params(10**8, 128)
    task = fill_placement(10**6, 128, p.bytes_per_vector, p.trained_bytes, 32768, 1.0)
    assert cores * task.memory <= 0.7 * gib * 2**30  # Ray offers ~70 % of a node to tasks
    assert cpu["maxReplicas"] == 4


def test_rayjobs_cover_every_cluster_job() -> None:
    stems = {p.stem.removeprefix("rayjob-") for p in RAYJOBS}
    assert stems == {"pretrain", "finetune", "tune", "index-build"}


def test_the_image_builds_on_the_pinned_ray() -> None:
    import ray

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-py311-gpu" in dockerfile
    images = {
        c["image"]
        for path in [*RAYJOBS, ROOT / "serve" / "rayservice.yaml"]
        for c in _containers(yaml.safe_load(path.read_text()))
    }
    assert images == {f"ghcr.io/echoseek/echoseek:ray{ray.__version__}-py311-gpu"}


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    cluster = spec.get("rayClusterSpec") or spec["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]
