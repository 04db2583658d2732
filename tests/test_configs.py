"""Every shipped YAML config loads into its job's typed Config (no drift between the two)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from echoseek.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    # ray_jobs/<job>.yaml and profiles ray_jobs/<job>.<profile>.yaml
    *(
        (p, f"echoseek.jobs.{p.name.split('.')[0]}")
        for p in sorted((ROOT / "ray_jobs").glob("*.yaml"))
    ),
    *((p, "echoseek.jobs.index_build") for p in sorted((ROOT / "indexing").glob("*.yaml"))),
]


def test_configs_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p, _ in CONFIGS}
    assert {"ray_jobs/embed.yaml", "indexing/local.yaml", "indexing/cluster.yaml"} <= names


@pytest.mark.parametrize(("path", "module"), CONFIGS, ids=lambda v: getattr(v, "name", v))
def test_config_loads(path: Path, module: str) -> None:
    job = importlib.import_module(module)
    cfg = load_config(job.Config, path, [])
    assert cfg.input and cfg.output, f"{path}: a job config names its input and output"


@pytest.mark.parametrize("job_name", ["pretrain", "finetune"])
def test_only_the_phase_profiles_use_the_phase_retrieval_augmentation(job_name: str) -> None:
    from echoseek.data.augment import PHASE_RETRIEVAL

    job = importlib.import_module(f"echoseek.jobs.{job_name}")

    def augment(profile: str) -> dict[str, object]:
        found = load_config(job.Config, ROOT / "ray_jobs" / f"{job_name}.{profile}.yaml", [])
        return {k: getattr(found.augment, k) for k in PHASE_RETRIEVAL}

    assert augment("phase") == PHASE_RETRIEVAL
    general = augment("local")  # nobody inherits phase's lateral-shift recipe by accident
    assert general != PHASE_RETRIEVAL and general["translate_x"] == 0
    if job_name == "pretrain":  # SimSiam's crops and flips
        assert general["crop_scale_min"] < 1 and general["hflip_prob"] > 0


@pytest.mark.parametrize("path", sorted((ROOT / "tune").glob("*.yaml")), ids=lambda p: p.name)
def test_sweep_presets_pass_every_check_before_a_trial(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from echoseek.jobs import tune
    from echoseek.sweep.tuner import prepare

    monkeypatch.chdir(ROOT)  # presets name their base config relative to the repository
    cfg = load_config(tune.Config, path, ["output=/nonexistent/sweep-check"])
    if cfg.job == "rerank":  # no training: every setting of the grid is checked
        from echoseek.sweep.rerank import settings

        space, draws, _ = settings(cfg)
        assert set(space) == set(cfg.space) and len(draws) == 8 * 3
        return
    prep = prepare(cfg)
    assert set(prep.space) == set(cfg.space) and prep.epochs >= 1
