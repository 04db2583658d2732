"""The cluster entry point: `ray job submit --working-dir . -- python -m echoseek.jobs.<job>`.

A real local head (`ray start --head`, dashboard and job server on 127.0.0.1, token auth on),
the team's real `mlflow server` (mlflow/README.md), and a job submitted to the head exactly as
the README says: a chained sweep, its `MLFLOW_TRACKING_URI` in the job's runtime environment.
Run as ``__main__``, a job's config classes and worker loop must still resolve on the Train
workers; its params, metrics and models must arrive at the server over HTTP. The head, the
server and the submission come from tests/cluster_job.py, started when the session starts.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from echoseek.config import load_config
from echoseek.models import load_model
from echoseek.training.finetune import FinetuneConfig
from echoseek.training.pretrain import PretrainConfig
from tests.cluster_job import Submitted, finished

pytestmark = pytest.mark.slow


def test_submitted_jobs_run_as_main_on_a_token_auth_cluster(
    submitted_sweep: Submitted | None,
) -> None:
    """A chained sweep (Optuna's draw; a Tune trial that pretrains, then fine-tunes its encoder
    with FastAP on SOART3 gamma, p = 2, ranking the held-out rows by that distance), submitted
    as the README says. One job: several CPU-bound jobs side by side cost minutes on 2 cores."""
    from mlflow.tracking import MlflowClient

    assert submitted_sweep is not None  # tests/conftest.py submits it for this test
    address, env, tmp_path = submitted_sweep.address, submitted_sweep.env, submitted_sweep.tmp
    logs = finished(address, env, [submitted_sweep.job_id])
    for job_id, out in logs.items():
        assert out.startswith("SUCCEEDED") and "NameError" not in out, f"{job_id}: {out[-3000:]}"

    (row,) = pq.read_table(tmp_path / "sweep" / "results.parquet").to_pylist()
    assert row["status"] == "finished" and row["epochs"] == 1, row
    models = tmp_path / "ray-tune" / "submitted-models"
    encoder, model = models / f"{row['trial_id']}-pretrain", models / row["trial_id"]
    _, model_meta = load_model(model)
    assert model_meta.extra["pretrained"] == str(encoder) and (encoder / "model.json").is_file()
    assert model_meta.distance == "soart3_gamma"
    assert model_meta.extra["val_distance"] == "soart3_gamma"
    assert model_meta.extra["val_distance_params"] == {"p": 2}
    best = load_config(FinetuneConfig, tmp_path / "sweep" / "best.yaml")
    again = load_config(PretrainConfig, tmp_path / "sweep" / "best_pretrain.yaml")
    drawn = float(row["param.pretrain.augment.crop_scale_min"])  # stored as text
    assert 0.4 <= drawn <= 0.6 and again.augment.crop_scale_min == drawn
    assert best.pretrained == again.output

    client = MlflowClient(submitted_sweep.tracking_uri)  # over HTTP, as a teammate would
    exp = client.get_experiment_by_name("echoseek")
    (parent,) = client.search_runs([exp.experiment_id], "tags.job = 'tune'")
    children = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    names = {c.info.run_name: c.data.tags["job"] for c in children}
    trial = f"submitted-{row['trial_id']}"
    assert names == {f"{trial}-pretrain": "pretrain", trial: "finetune"}
    (pre,) = (c for c in children if c.data.tags["job"] == "pretrain")
    assert pre.info.status == "FINISHED" and pre.data.params["batch_size"] == "8"
    assert [m.step for m in client.get_metric_history(pre.info.run_id, "loss")] == [0]
    for child in children:
        assert {a.path for a in client.list_artifacts(child.info.run_id, "model")} >= {
            "model/model.json",
            "model/model.pt",
        }
        # proxied by the server into its own artifact root, not a path of the job's host
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")
    assert len(list(submitted_sweep.artifacts.rglob("model.pt"))) == 2
    submitted_sweep.stop()  # the head is done: its daemons leave the other tests' CPUs
