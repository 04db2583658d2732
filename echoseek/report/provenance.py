"""Where a model came from: the MLflow run that trained it, that run's config and history.

The run is the one a ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` version was
registered from, or the ``mlflow_run_id`` a model directory's ``model.json`` records; the raw
pixel baseline and a model trained without tracking have none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from echoseek.model_ref import ModelRef
from echoseek.tracking import client as tracking_client

HISTORY_METRICS = ("loss", "val_map")


@dataclass
class ModelRun:
    """The training run of a model; ``run_id`` empty when it is not known to the store."""

    run_id: str = ""
    name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    dataset_sha256: str = ""  # the dataset it trained on (the run's tag)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def model_run_id(model: str, store: str) -> str:
    """The id of the run that produced ``model`` (a dir or an MLflow URI); "" for none."""
    return ModelRef.parse(model).training_run(store)


def model_run(model: str, store: str) -> ModelRun:
    """The run of ``model`` with its params and loss / val mAP history, read from ``store``;
    an empty :class:`ModelRun` when the store does not hold it."""
    from mlflow.exceptions import MlflowException

    run_id = model_run_id(model, store)
    if not run_id:
        return ModelRun()
    client = tracking_client(store)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return ModelRun()
    history = {
        name: [(p.step, p.value) for p in client.get_metric_history(run_id, name)]
        for name in HISTORY_METRICS
    }
    return ModelRun(
        run_id=run_id,
        name=run.info.run_name or "",
        params=dict(run.data.params),
        dataset_sha256=run.data.tags.get("dataset_sha256", ""),
        history=history,
    )
