"""The MLflow model registry as echoseek uses it: versions, the ``@candidate`` and
``@champion`` aliases, and the lineage tags a version carries.

A version is registered from the ``model`` artifact of the run that trained it (echoseek's
model directory, see :func:`echoseek.tracking.register_model_dir`) and tagged with the run's
training dataset (``dataset_sha256``); a run already registered under the name keeps its
version. Promotion rules live in :mod:`echoseek.jobs.model_promote`.
"""

from __future__ import annotations

from typing import Any

from echoseek.errors import InputError
from echoseek.model_ref import RUN, ModelRef
from echoseek.tracking import client, register_model_dir

CANDIDATE, CHAMPION = "candidate", "champion"
MODEL_ARTIFACT = "model"


def register(model: str, name: str, store: str) -> Any:
    """The ``ModelVersion`` of ``name`` holding ``model``: a ``models:/`` URI of ``name`` as it
    is; a model directory or ``runs:/ID/...`` by its training run, registering that run's
    ``model`` artifact unless a version of ``name`` already comes from the run."""
    ref = ModelRef.parse(model)
    if ref.registered:
        version = ref.model_version(store)
        if version.name != name:
            raise InputError(f"{model}: a version of '{version.name}', not of '{name}'")
        return version
    run_id = ref.training_run(store)
    if not run_id:
        raise InputError(f"{model}: no MLflow run recorded for this model; nothing to register")
    store_client = client(store)
    for version in store_client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        return version
    try:
        run = store_client.get_run(run_id)
    except Exception as exc:
        raise InputError(f"{model}: its run {run_id} is not in the store {store}") from exc
    artifact = (ref.path if ref.kind == RUN else "") or MODEL_ARTIFACT
    number = register_model_dir(run_id, artifact, name, store)
    store_client.set_model_version_tag(
        name, number, "dataset_sha256", run.data.tags.get("dataset_sha256", "")
    )
    return store_client.get_model_version(name, number)


def alias_version(name: str, alias: str, store: str) -> Any | None:
    """The version ``name@alias`` points at, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client(store).get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_alias(name: str, alias: str, version: str, store: str) -> None:
    """Point ``name@alias`` at ``version`` (moved from wherever it pointed)."""
    client(store).set_registered_model_alias(name, alias, version)


def trained_on(version: Any, store: str) -> str:
    """The sha256 of the dataset a registered ``version`` trained on ("" when not recorded)."""
    tagged = (version.tags or {}).get("dataset_sha256", "")
    return str(tagged) if tagged else run_dataset(version.run_id or "", store)


def check_held_out(dataset: str, sha256: str, candidate: str, champion: Any, store: str) -> None:
    """InputError when the candidate (a model spec) or the champion (a version or None) trained
    on the dataset whose sha256 is given: a promotion is decided on data neither trained on."""
    training_data = {
        "candidate": model_trained_on(candidate, store),
        "champion": trained_on(champion, store) if champion is not None else "",
    }
    for role, data in training_data.items():
        if data == sha256:
            raise InputError(
                f"{dataset}: the {role} trained on this dataset; promotion needs data "
                "neither model trained on"
            )


def model_trained_on(model: str, store: str) -> str:
    """The same for a model that may not be registered yet (a dir, ``runs:/`` or ``models:/``)."""
    ref = ModelRef.parse(model)
    if ref.registered:
        return trained_on(ref.model_version(store), store)
    return run_dataset(ref.training_run(store), store)


def run_dataset(run_id: str, store: str) -> str:
    """The ``dataset_sha256`` tag of a training run ("" when there is none)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return ""
    try:
        return str(client(store).get_run(run_id).data.tags.get("dataset_sha256", ""))
    except MlflowException:
        return ""
