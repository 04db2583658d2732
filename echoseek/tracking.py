"""MLflow helpers: where the tracking store is, and fetching logged model artifacts.

The tracking URI is, in order: the job config's ``tracking_uri``, ``$MLFLOW_TRACKING_URI``,
or the local store ``sqlite:///<cwd>/mlflow/mlflow.db``. The default is an absolute URI so
that every Ray worker started from the same directory writes the same store; its artifacts
live beside it in ``mlflow/artifacts/`` (see ``mlflow/README.md``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from echoseek.errors import InputError

LOCAL_STORE_DIR = "mlflow"
MLFLOW_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:")


def local_store(base: str | Path | None = None) -> Path:
    """The local store directory ``<base or cwd>/mlflow`` as an absolute path."""
    return (Path(base) if base is not None else Path.cwd()).resolve() / LOCAL_STORE_DIR


def tracking_uri(configured: str = "") -> str:
    """``configured`` → ``$MLFLOW_TRACKING_URI`` → ``sqlite:///<cwd>/mlflow/mlflow.db``."""
    if configured:
        return configured
    from_env = os.environ.get("MLFLOW_TRACKING_URI", "")
    if from_env:
        return from_env
    return f"sqlite:///{local_store() / 'mlflow.db'}"


def is_mlflow_uri(uri: str) -> bool:
    """True for ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``runs:/ID/PATH`` URIs."""
    return uri.startswith(MLFLOW_URI_SCHEMES)


def download_artifact_dir(uri: str, tracking: str = "", dst: str | Path | None = None) -> Path:
    """Download the artifact directory ``uri`` names into ``dst`` (a new temp dir by default).

    Raises :class:`InputError` naming the URI and the tracking store when MLflow cannot
    resolve it (unknown model or version, missing run, unreachable server).
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    store = tracking_uri(tracking)
    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="echoseek-model-"))
    target.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(target), tracking_uri=store
        )
    except (MlflowException, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{uri}: cannot fetch from MLflow at {store}: {first_line}") from exc
    return Path(local)


def register_model_dir(run_id: str, artifact_path: str, name: str, tracking: str = "") -> str:
    """Register the model directory logged at ``runs:/run_id/artifact_path`` as ``name``.

    echoseek's model artifact is a plain directory (``model.json`` + ``model.pt``), not an
    MLflow flavour, so the version's source is the run's artifact URI itself. Creates the
    registered model when missing; returns the new version number as a string.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(tracking))
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    return str(client.create_model_version(name, source, run_id=run_id).version)
