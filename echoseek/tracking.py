"""MLflow helpers: where the tracking store is, and fetching logged model artifacts.

The tracking URI is, in order: the job config's ``tracking_uri``, ``$MLFLOW_TRACKING_URI``,
or the local store ``sqlite:///<cwd>/mlflow/mlflow.db``. The default is an absolute URI so
that every Ray worker started from the same directory writes the same store; its artifacts
live beside it in ``mlflow/artifacts/`` (see ``mlflow/README.md``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from echoseek.errors import InputError

T = TypeVar("T")

LOCAL_STORE_DIR = "mlflow"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_BATCH_METRICS = 1000  # MLflow's limit on metrics in one log_batch call
RUN_NAME_TAG = "echoseek.run_name"
CONFIG_ARTIFACT = "config.json"  # the job's whole config, as it ran


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


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps artifacts: ``mlflow/artifacts/`` beside a local sqlite
    store, the server's default (None) otherwise."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return (Path(uri[len(prefix) :]).parent / "artifacts").resolve().as_uri()
    return None


def client(uri: str) -> Any:
    """An ``MlflowClient`` whose tracking store and model registry are both ``uri``.

    MLflow opens the store when the client is made, and a new sqlite store is created then,
    printing its migration lines; a missing local store is therefore seeded first
    (:func:`seed_sqlite_store`), and the creation MLflow does itself when it cannot be is quiet.
    """
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        seed_sqlite_store(Path(uri[len("sqlite:///") :]))
    with quiet_migrations():
        return MlflowClient(uri, registry_uri=uri)


def check_reachable(uri: str) -> None:
    """Fail fast with a clear error when the tracking store cannot be reached or opened."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as exc:
        raise InputError(
            f"MLflow tracking store {uri} is not reachable: {_first_line(exc)}"
        ) from None


def seed_sqlite_store(path: Path) -> None:
    """Create a missing local store from an empty one kept per MLflow version.

    MLflow creates a new sqlite store by running its schema migrations, which takes seconds
    each time (every job with its own store pays it). The cached copy is that same migrated
    database with no experiment at all (:func:`_empty_store`): opening the copy, MLflow creates
    its Default experiment itself, where it would have in a new store (``<cwd>/mlruns/0``).
    A store that exists is never touched, and two processes seeding one path at once leave
    one complete copy (link, not overwrite).
    """
    from mlflow.tracking import MlflowClient

    import mlflow

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "echoseek"
    empty = cache / f"mlflow-{mlflow.__version__}-empty-v2.db"
    staging = path.with_name(f".{path.name}.{os.getpid()}.seed")
    try:
        with quiet_migrations():
            if not empty.is_file():
                _empty_store(empty)
            shutil.copyfile(empty, staging)
            MlflowClient(f"sqlite:///{staging}").search_experiments(max_results=1)
        with contextlib.suppress(FileExistsError):  # another process seeded it first: keep it
            os.link(staging, path)
    except (OSError, subprocess.SubprocessError):
        pass  # no cache: MLflow creates the store itself, only slower
    finally:
        staging.unlink(missing_ok=True)


@contextlib.contextmanager
def quiet_migrations() -> Iterator[None]:
    """MLflow's store setup without its INFO lines on the terminal ("Creating initial MLflow
    database tables...", "Updating database tables"): a user's first job on a machine makes
    the cached empty store and would print them."""
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _empty_store(target: Path) -> None:
    """A migrated sqlite store without experiments at ``target``, made with MLflow's public
    API: a new store's Default experiment is deleted, then purged by ``mlflow gc``."""
    from mlflow.tracking import MlflowClient

    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(f".{target.name}.{os.getpid()}")
    uri = f"sqlite:///{fresh}"
    try:
        MlflowClient(uri).delete_experiment("0")
        gc = ["gc", "--backend-store-uri", uri, "--experiment-ids", "0"]
        subprocess.run(
            [sys.executable, "-m", "mlflow", *gc],
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            capture_output=True,
            check=True,
            timeout=120,
        )
        os.replace(fresh, target)
    finally:
        fresh.unlink(missing_ok=True)


def git_commit(cwd: str | Path | None = None) -> str:
    """The checked-out commit of the working directory, or "" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """``{"train.lr": "0.05", ...}``: nested mappings flattened, values stringified, long
    values cut to MLflow's limit, and characters MLflow refuses in a key (the comma of a
    sweep's ``"a,b"`` field) replaced by a space: one bad key fails the whole batch."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = BAD_KEY_CHARS.sub(" ", str(key))
        if isinstance(value, Mapping):
            out.update({f"{name}.{k}": v for k, v in flat_params(value).items()})
        else:
            out[name] = str(value)[:MAX_PARAM_CHARS]
    return out


BAD_KEY_CHARS = re.compile(r"[^\w\-. :/]")  # MLflow keys: alphanumerics, _ - . space : /


class RunLogger:
    """One MLflow run, written from one process (rank 0): params, metrics, tags, artifacts.

    :meth:`start` fails with :class:`InputError` when the store is unreachable; afterwards a
    failing call warns and retries ``retries`` times with exponential backoff, then gives up
    on that call. Logging never raises into the training loop. Starting again with the same
    ``run_name`` in the same experiment reopens that run (a resumed job keeps one run).
    """

    def __init__(
        self,
        tracking: str = "",
        experiment: str = "echoseek",
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.uri = tracking_uri(tracking)
        self.experiment = experiment
        self.retries = retries
        self.backoff_s = backoff_s
        self.client = client(self.uri)
        self.run_id = ""

    def start(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Open (or reopen) the run ``run_name``; log ``params`` (flattened, and whole as the
        ``config.json`` artifact) and ``tags``; return its id."""
        check_reachable(self.uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else self.client.create_experiment(self.experiment, artifact_root(self.uri))
        )
        found = self.client.search_runs(
            [exp_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'", max_results=1
        )
        if found:
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                exp_id, run_name=run_name, tags={RUN_NAME_TAG: run_name, **tags}
            )
            self.run_id = run.info.run_id
            self._call(self.client.log_batch, self.run_id, params=_params(flat_params(params)))
        self._call(self.client.log_dict, self.run_id, dict(params), CONFIG_ARTIFACT)
        return self.run_id

    def attach(self, run_id: str) -> RunLogger:
        """Log into an existing run (a worker continuing the run its driver started)."""
        self.run_id = run_id
        return self

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set (or replace) tags of the run."""
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        if batch:
            self._call(self.client.log_batch, self.run_id, tags=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log finite numeric ``metrics`` at ``step``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(metric_name(k), float(v), now, step) for k, v in metrics.items() if _finite(v)
        ]
        if batch:
            self._call(self.client.log_batch, self.run_id, metrics=batch)

    def log_series(self, key: str, first_step: int, values: Sequence[float]) -> None:
        """Log ``values`` of metric ``key`` at steps ``first_step, first_step + 1, ...``
        (per-step metrics, sent in batches of MLflow's 1000-metric limit)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        name = metric_name(key)
        batch = [
            Metric(name, float(v), now, first_step + i) for i, v in enumerate(values) if _finite(v)
        ]
        for start in range(0, len(batch), MAX_BATCH_METRICS):
            self._call(
                self.client.log_batch, self.run_id, metrics=batch[start : start + MAX_BATCH_METRICS]
            )

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """Copy a directory's files into the run's artifacts."""
        self._call(self.client.log_artifacts, self.run_id, str(local_dir), artifact_path)

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy one file into the run's artifacts."""
        self._call(self.client.log_artifact, self.run_id, str(path), artifact_path)

    def log_history_plot(self, metric: str) -> None:
        """Plot the run's full history of ``metric`` (by step) as ``{metric}_curve.png``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        points = self._call(self.client.get_metric_history, self.run_id, metric) or []
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot([p.step for p in points], [p.value for p in points], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{metric}_curve.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            self.log_file(path)

    def register(self, name: str, artifact_path: str) -> str:
        """Register the model dir logged at ``artifact_path`` as ``name``; return the version."""
        return self._call(register_model_dir, self.run_id, artifact_path, name, self.uri) or ""

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if self.run_id:
            self._call(self.client.set_terminated, self.run_id, status)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        for attempt in range(self.retries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if attempt == self.retries:
                    warnings.warn(
                        f"MLflow {getattr(fn, '__name__', 'call')} failed {attempt + 1} times, "
                        f"skipped: {_first_line(exc)}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    return None
                time.sleep(self.backoff_s * 2**attempt)
        return None


def metric_name(key: str) -> str:
    """An MLflow-safe metric name: ``p@10`` → ``p_at_10``; other characters MLflow refuses
    (anything but letters, digits, ``_ - . / :`` and space) → ``_``."""
    text = key.replace("@", "_at_")
    return "".join(c if c.isalnum() or c in "_-./: " else "_" for c in text)


def _params(params: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, v) for k, v in params.items()]


def _finite(value: Any) -> bool:
    try:
        return bool(abs(float(value)) < float("inf"))
    except (TypeError, ValueError):
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def download_artifacts(source: str, store: str, dst: Path, label: str = "") -> Path:
    """Download the artifact directory ``source`` (a ``runs:/`` URI or a model version's
    artifact URI) from the tracking store ``store`` into ``dst``; returns the local directory.

    Raises :class:`InputError` naming ``label`` (default ``source``) and the store when MLflow
    cannot resolve it (missing run or path, unreachable server).
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    dst.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst), tracking_uri=store
        )
    except (MlflowException, OSError) as exc:
        raise fetch_error(label or source, store, exc) from exc
    return Path(local)


def fetch_error(uri: str, store: str, exc: BaseException) -> InputError:
    """The one-line error for an MLflow reference ``uri`` the store cannot resolve."""
    return InputError(f"{uri}: cannot fetch from MLflow at {store}: {_first_line(exc)}")


def register_model_dir(run_id: str, artifact_path: str, name: str, tracking: str = "") -> str:
    """Register the model directory logged at ``runs:/run_id/artifact_path`` as ``name``.

    echoseek's model artifact is a plain directory (``model.json`` + ``model.pt``), not an
    MLflow flavour, so the version's source is the run's artifact URI itself. Creates the
    registered model when missing; returns the new version number as a string.
    """
    from mlflow.exceptions import MlflowException

    store = client(tracking_uri(tracking))
    try:
        store.get_registered_model(name)
    except MlflowException:
        store.create_registered_model(name)
    source = f"{store.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    return str(store.create_model_version(name, source, run_id=run_id).version)
