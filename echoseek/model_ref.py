"""A reference to an embedding model, parsed once: what every job's ``model`` field names.

Five forms are accepted::

    pixels                   the raw-pixel baseline (no model, no run)
    work/model               a local model directory (or model.json / model.pt inside it)
    runs:/RUN_ID/PATH        the artifact directory PATH logged by an MLflow run
    models:/NAME/VERSION     a registered model version
    models:/NAME@ALIAS       the version a registry alias names (moves; see :meth:`pinned`)

Anything else with a URI scheme (``s3://``, ``models:/NAME``, ``runs:/``) is refused by
:meth:`ModelRef.parse` with an :class:`~echoseek.errors.InputError` naming the problem. MLflow
references resolve in a tracking store (``tracking``: a configured URI, or "" for
:func:`echoseek.tracking.tracking_uri`'s default), looked up in that store's own registry.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from echoseek.errors import InputError
from echoseek.tracking import client as tracking_client
from echoseek.tracking import download_artifacts, fetch_error, tracking_uri

PIXELS, LOCAL, RUN, VERSION, ALIAS = "pixels", "local", "run", "version", "alias"
META_FILE = "model.json"  # what makes a directory a model directory
WEIGHTS_FILE = "model.pt"
FORMS = "a model directory, pixels, runs:/RUN_ID/PATH, models:/NAME/VERSION or models:/NAME@ALIAS"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two letters at least: C:\ is a path
_NAME = re.compile(r"^[^/@]+$")


@dataclass(frozen=True)
class ModelRef:
    """One parsed model reference; ``str(ref)`` (and :attr:`uri`) is its canonical text.

    ``path`` is the local directory (``local``) or the artifact path in the run (``run``);
    ``name`` with ``version`` or ``alias`` a registered model (``version``, ``alias``).
    """

    kind: str
    path: str = ""
    run_id: str = ""
    name: str = ""
    version: str = ""
    alias: str = ""

    @classmethod
    def parse(cls, text: str | Path) -> ModelRef:
        """The reference ``text`` names; InputError for an empty or malformed one."""
        raw = str(text).strip()
        if not raw:
            raise InputError(f"model: empty (expected {FORMS})")
        if raw == PIXELS:
            return cls(PIXELS)
        if raw.startswith("models:/"):
            return _registered(raw)
        if raw.startswith("runs:/"):
            return _run(raw)
        if "://" in raw or _SCHEME.match(raw):
            raise InputError(
                f"{raw}: remote model paths are not supported; pass a local model directory "
                "or an MLflow models:/ or runs:/ URI"
            )
        return cls(LOCAL, path=raw)

    @property
    def uri(self) -> str:
        """The canonical text: what artifacts and manifests record."""
        if self.kind == RUN:
            return f"runs:/{self.run_id}/{self.path}".rstrip("/")
        if self.kind == VERSION:
            return f"models:/{self.name}/{self.version}"
        if self.kind == ALIAS:
            return f"models:/{self.name}@{self.alias}"
        return self.path or self.kind

    def __str__(self) -> str:
        return self.uri

    @property
    def in_mlflow(self) -> bool:
        """True for ``runs:/`` and ``models:/`` references (they need a tracking store)."""
        return self.kind in (RUN, VERSION, ALIAS)

    @property
    def registered(self) -> bool:
        """True for ``models:/`` references (a version of a registered model)."""
        return self.kind in (VERSION, ALIAS)

    def absolute(self) -> ModelRef:
        """A local directory made absolute (Ray workers run elsewhere); others unchanged."""
        return replace(self, path=str(Path(self.path).resolve())) if self.kind == LOCAL else self

    def store(self, tracking: str = "") -> str:
        """The tracking store an MLflow reference resolves in, recorded beside its URI in
        vectors and index manifests so a later reader finds the model; "" for others."""
        return tracking_uri(tracking) if self.in_mlflow else ""

    def model_version(self, tracking: str = "") -> Any:
        """The registry's ``ModelVersion`` of a ``models:/`` reference, looked up in the
        registry of the store itself (MLflow's own ``models:/`` resolution consults the
        process-wide registry URI, whatever store it is given)."""
        from mlflow.exceptions import MlflowException  # heavy: imported on use

        if not self.registered:
            raise InputError(f"{self}: not a registered model (models:/NAME/VERSION)")
        store = tracking_uri(tracking)
        client = tracking_client(store)
        try:
            if self.kind == ALIAS:
                return client.get_model_version_by_alias(self.name, self.alias)
            return client.get_model_version(self.name, self.version)
        except MlflowException as exc:
            raise fetch_error(self.uri, store, exc) from exc

    def pinned(self, tracking: str = "") -> ModelRef:
        """``models:/NAME@ALIAS`` as the version the alias names now; others unchanged.
        Artifacts record the pinned reference: an alias moves, a version does not."""
        if self.kind != ALIAS:
            return self
        found = self.model_version(tracking)
        return ModelRef(VERSION, name=str(found.name), version=str(found.version))

    def training_run(self, tracking: str = "") -> str:
        """The id of the MLflow run the model came from ("" for pixels and a model trained
        without tracking): the run of ``runs:/``, the run a version was registered from, or
        the ``mlflow_run_id`` a directory's ``model.json`` records."""
        if self.kind == RUN:
            return self.run_id
        if self.registered:
            return str(self.model_version(tracking).run_id or "")
        if self.kind == LOCAL:
            return _recorded_run(self.local_dir() / META_FILE)
        return ""

    def local_dir(self, tracking: str = "", dst: str | Path | None = None) -> Path:
        """The local model directory: a directory as it is (a file in it names it); an MLflow
        reference downloaded from its store into ``dst`` (a new temporary directory the caller
        owns when None). InputError when it is missing or holds no ``model.json``."""
        if self.kind == PIXELS:
            raise InputError("pixels: the raw-pixel baseline has no model directory")
        if self.kind == LOCAL:
            return _directory(Path(self.path))
        store = tracking_uri(tracking)
        source = str(self.model_version(store).source) if self.registered else self.uri
        target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="echoseek-model-"))
        path = download_artifacts(source, store, target, label=self.uri)
        if not (path / META_FILE).is_file():
            raise InputError(f"{self}: the MLflow artifact has no {META_FILE}; not a model dir")
        return path


def _registered(raw: str) -> ModelRef:
    ref = raw.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if not _NAME.match(name) or not _NAME.match(alias):
            raise InputError(f"{raw}: expected models:/NAME@ALIAS with a name and an alias")
        return ModelRef(ALIAS, name=name, alias=alias)
    name, _, version = ref.partition("/")
    if not _NAME.match(name) or not version.isdigit():
        raise InputError(
            f"{raw}: expected models:/NAME/VERSION (a version number) or models:/NAME@ALIAS"
        )
    return ModelRef(VERSION, name=name, version=str(int(version)))


def _run(raw: str) -> ModelRef:
    run_id, _, path = raw.removeprefix("runs:/").partition("/")
    if not run_id or not re.fullmatch(r"[A-Za-z0-9_-]+", run_id):
        raise InputError(f"{raw}: expected runs:/RUN_ID/PATH with a run id")
    return ModelRef(RUN, run_id=run_id, path=path.strip("/"))


def _directory(path: Path) -> Path:
    if path.is_file() and path.name in (META_FILE, WEIGHTS_FILE):
        path = path.parent
    if not path.is_dir():
        raise InputError(f"{path}: model directory not found")
    return path


def _recorded_run(meta_file: Path) -> str:
    """The ``extra.mlflow_run_id`` a ``model.json`` records ("" when none)."""
    try:
        data = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{meta_file}: not readable JSON ({exc})") from None
    extra = data.get("extra") if isinstance(data, dict) else None
    return str(extra.get("mlflow_run_id", "")) if isinstance(extra, dict) else ""
