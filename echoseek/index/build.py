"""Staged, sharded index build: check ids → sample → train once → fill shards → calibrate →
publish, each stage as Ray tasks placed by the memory they need (:mod:`echoseek.index.tasks`).

The stages follow autofaiss's distributed build (``indices/distributed.py``); the driver holds
only plans, samples and summaries, never data that grows with N:

1. ``check``: every external id non-null and unique, a map-reduce over id hashes in tasks
   (:mod:`echoseek.index.ids`);
2. ``sample``: a seeded uniform sample of ``params.train_size`` row numbers
   (:func:`~echoseek.index.train.sample_rows`), read by one task per shard from the row groups
   that hold them (:func:`~echoseek.data.vectors.read_rows`);
3. ``train``: one task (a GPU when the cluster has one) trains the empty index on the sample
   and writes it to the staging directory (:func:`~echoseek.index.train.train_to_file`);
4. ``fill``: one task per shard (:func:`fill_from_source`) takes the trained index through the
   object store, streams its contiguous slice of input rows, calls ``add_with_ids`` with
   global row numbers and writes its faiss file, float16 re-rank vectors and id→metadata
   Parquet under temporary names, renamed when complete, so a task retried after a lost node
   rewrites its shard whole. Each task asks for the memory its rows need
   (:func:`fill_placement`), tasks spread over the nodes, and each records the node it ran on,
   its rows, seconds and peak RSS (the manifest's ``build.shard_fills``);
5. ``calibrate``: the smallest nprobe reaching recall@10 ≥ 0.9 with exact re-rank, measured
   per shard in tasks and merged (:mod:`echoseek.index.calibrate`; skipped for Flat), becomes
   the default nprobe;
6. ``publish``: the manifest is written and the version renamed into place
   (:mod:`echoseek.index.publish`). Any failure, in any stage or task, removes the staging
   directory and publishes nothing.

On a cluster the index root must be a filesystem every worker can write (the shared mount)
or an object store every node reaches (``s3://…``, ``gs://…``): tasks then write their files
on node-local scratch and upload each when complete, read the shards they calibrate from
node-local copies, and the version is published by order
(:func:`~echoseek.index.publish.staged_remote_version`). The input may be a vectors artifact
in a store as well (:func:`~echoseek.data.vectors.open_vectors`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from echoseek.data.vectors import (
    METADATA_TYPES,
    VectorBatch,
    VectorSource,
    iter_vector_batches,
    open_vectors,
    read_rows,
)
from echoseek.errors import InputError
from echoseek.index.calibrate import calibrate_on_shards
from echoseek.index.ids import check_unique_ids
from echoseek.index.manifest import (
    FORMAT,
    FORMAT_VERSION,
    TRAINED,
    shard_names,
    write_manifest,
)
from echoseek.index.params import IndexParams, choose_params
from echoseek.index.plan import ROWS_PER_SHARD, ShardPlan, auto_num_shards, plan_shards
from echoseek.index.publish import (
    DEFAULT_RETENTION,
    new_version_id,
    staged_anywhere,
)
from echoseek.index.recall import CALIBRATION_QUERIES, CALIBRATION_TARGET
from echoseek.index.rerank import NATURAL_DISTANCE
from echoseek.index.tasks import (
    READ_BUFFER_BYTES,
    WORKER_BASE_BYTES,
    Pending,
    Placement,
    gather,
    remove_temporaries,
    reset_peak_rss,
    submit,
    task_record,
    wait,
)
from echoseek.index.train import (
    deserialize_index,
    normalize_rows,
    sample_rows,
    serialize_index,
    train_index,
    train_to_file,
)
from echoseek.object_store import is_uri, join, sha256, writing
from echoseek.ray_session import cluster_has_gpus, ensure_ray
from echoseek.storage import combined_sha256, sha256_file

BATCH_SIZE = 1 << 15
METADATA_SCHEMA = pa.schema(
    [("internal_id", pa.int64()), ("id", pa.string()), *METADATA_TYPES.items()]
)


def build_index(
    input: str | Path | VectorSource,
    root: str | Path,
    params: IndexParams | None = None,
    *,
    num_shards: int = 0,
    rows_per_shard: int = ROWS_PER_SHARD,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    use_gpu: bool | None = None,
    use_ray: bool = True,
    cpus_per_shard: float = 1.0,
    train_cpus: float = 1.0,
    retention: int = DEFAULT_RETENTION,
    model_uri: str = "",
    model_tracking_uri: str = "",
    target_recall: float | None = CALIBRATION_TARGET,
    calibration_queries: int = CALIBRATION_QUERIES,
) -> dict[str, Any]:
    """Build and publish a new index version of ``input`` under ``root``; return its manifest.

    The input's external ids must be non-null and unique; a failure publishes nothing and
    leaves no staging directory (nor a new, empty ``root``).

    ``params`` defaults to :func:`~echoseek.index.params.choose_params` for the input's size.
    The default nprobe is the smallest one reaching recall@10 ≥ ``target_recall`` on
    ``calibration_queries`` sampled stored vectors (``target_recall=None``: ``params.nprobe``).
    ``model_tracking_uri``: the MLflow store ``model_uri`` resolves in (default: the one the
    vectors artifact records), so a service finds the model without being told.
    ``use_ray=False`` runs every stage's tasks one after another in this process.
    ``cpus_per_shard`` and ``train_cpus``: the CPUs a fill task and the train task reserve
    (faiss runs that many OpenMP threads in a Ray task).
    """
    source = input if isinstance(input, VectorSource) else open_vectors(input)
    params = params or choose_params(source.count, source.dim)
    if params.dim != source.dim:
        raise InputError(f"{source.path}: vectors have dim {source.dim}, params say {params.dim}")
    plans = plan_shards(source.count, num_shards or auto_num_shards(source.count, rows_per_shard))
    version = new_version_id()
    t: dict[str, float] = {}
    with staged_anywhere(root, version, retention) as staging:
        checksums = _source_checksums(source, use_ray)
        with stage(t, "check"):
            check_unique_ids(source, plans, batch_size, use_ray)
        with stage(t, "sample"):
            parts = sample_stage(source, params, plans, seed, use_ray)
            wait(parts)
        with stage(t, "train"):
            trained = train_on_sample(
                params, parts, join(staging, TRAINED), use_gpu, use_ray, train_cpus
            )
            wait(trained)
        with stage(t, "fill"):
            entries = fill_shards(
                trained, source, plans, staging, normalize=params.normalize,
                batch_size=batch_size, use_ray=use_ray, cpus_per_shard=cpus_per_shard,
                params=params,
            )  # fmt: skip
        fills = [{"file": e["file"], "rows": e["count"], **e.pop("task")} for e in entries]
        manifest = new_manifest(
            version,
            params,
            entries,
            trained_sha256=sha256(join(staging, TRAINED)),
            model_uri=model_uri or source.model_uri,
            model_tracking_uri=model_tracking_uri
            or str(source.descriptor.get("model_tracking_uri", "")),
            dataset_sha256=str(source.descriptor.get("dataset_sha256", "")),
            vectors_sha256=source.sha256 or combined_sha256(gather(checksums)),
            build={**t, "seed": seed, "train_size": params.train_size, "shard_fills": fills},
        )
        if target_recall is not None and params.nlist > 1:
            calibrate(staging, manifest, target_recall, calibration_queries, seed, use_ray)
        write_manifest(staging, manifest)
    return manifest


def calibrate(
    staging: str | Path,
    manifest: dict[str, Any],
    target: float,
    queries: int,
    seed: int,
    use_ray: bool,
) -> None:
    """Stage 5: measure the default nprobe on the staged files and write it into ``manifest``."""
    t: dict[str, float] = {}
    with stage(t, "calibrate"):
        point = calibrate_on_shards(
            staging, manifest, target=target, n_queries=queries, seed=seed, use_ray=use_ray
        )
    manifest["default_nprobe"] = point["nprobe"]
    manifest["build"].update(calibrate_s=t["calibrate_s"], calibration=point)


@contextmanager
def stage(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall time of the block as ``timings[name + "_s"]``."""
    t0 = time.perf_counter()
    yield
    timings[f"{name}_s"] = time.perf_counter() - t0


def train_stage(
    source: VectorSource,
    params: IndexParams,
    seed: int = 0,
    use_gpu: bool | None = None,
) -> np.ndarray:
    """Stages 2–3 in this process: sample ``params.train_size`` rows, train, return the
    serialised index."""
    rows = sample_rows(source.count, params.train_size, seed) if params.kind != "flat" else None
    sample = np.empty((0, source.dim), dtype=np.float32)
    if rows is not None and len(rows):
        sample = read_rows(source, rows)
        if params.normalize:
            sample = normalize_rows(sample)
    return serialize_index(train_index(params, sample, use_gpu))


def sample_stage(
    source: VectorSource, params: IndexParams, plans: Sequence[ShardPlan], seed: int, use_ray: bool
) -> Pending:
    """Stage 2: the seeded sample's rows, read by one task per shard that holds any of them
    (outputs: an array, or its object ref, per such shard, in row order)."""
    rows = sample_rows(source.count, params.train_size, seed) if params.kind != "flat" else None
    if rows is None or not len(rows):
        return Pending([], on_ray=use_ray)
    cuts = np.searchsorted(rows, [p.start for p in plans] + [source.count])
    mine = [rows[cuts[i] : cuts[i + 1]] for i in range(len(plans))]
    calls = [(source, r) for r in mine if len(r)]
    places = [sample_placement(len(r), source.dim) for _, r in calls]
    return submit(read_rows, calls, places, use_ray)


def train_on_sample(
    params: IndexParams,
    parts: Pending,
    out: str,
    use_gpu: bool | None,
    use_ray: bool,
    cpus: float = 1.0,
) -> Pending:
    """Stage 3: one task trains on the sample's parts and writes ``out``; its output (the
    serialised index, or its object ref) goes to the fill tasks as is. It asks for a GPU
    when ``use_gpu`` or (None) when the cluster has one."""
    gpu = use_gpu if use_gpu is not None else _cluster_has_gpus(use_ray)
    place = train_placement(params, num_cpus=cpus, num_gpus=1.0 if gpu else 0.0)
    return submit(train_to_file, [(params, out, use_gpu, *parts.outputs)], place, use_ray)


def fill_shards(
    trained: np.ndarray | Pending,
    source: VectorSource,
    plans: Sequence[ShardPlan],
    out_dir: str | Path,
    *,
    normalize: bool,
    batch_size: int = BATCH_SIZE,
    use_ray: bool = True,
    cpus_per_shard: float = 1.0,
    params: IndexParams | None = None,
) -> list[dict[str, Any]]:
    """Stage 4: fill every shard, as Ray tasks placed by :func:`fill_placement` or one after
    another in this process; returns the manifest entries, each with its task's record under
    ``task``. ``trained`` is the serialised index or the train stage's pending output."""
    if isinstance(trained, Pending):
        index_arg, size = trained.outputs[0], params.trained_bytes if params else 0
    else:
        index_arg, size = trained, trained.nbytes
        if use_ray:
            import ray

            index_arg = ray.put(trained)
    per_vector = params.bytes_per_vector if params else 4.0 * source.dim + 8
    calls = [(index_arg, source, p, str(out_dir), normalize, batch_size) for p in plans]
    places = [
        fill_placement(p.count, source.dim, per_vector, size, batch_size, cpus_per_shard)
        for p in plans
    ]
    entries = gather(submit(fill_from_source, calls, places, use_ray))
    if not is_uri(out_dir):
        remove_temporaries(Path(out_dir))
    return entries


def fill_from_source(
    trained: np.ndarray,
    source: VectorSource,
    plan: ShardPlan,
    out_dir: str,
    normalize: bool,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """The body of one shard task: read input rows ``plan.start..stop`` and fill the shard."""
    batches = iter_vector_batches(source, batch_size, plan.start, plan.stop)
    return fill_shard(trained, batches, plan, out_dir, normalize, source.has_ids)


def fill_shard(
    trained: np.ndarray,
    batches: Iterable[VectorBatch],
    plan: ShardPlan,
    out_dir: str | Path,
    normalize: bool,
    external_ids: bool = True,
) -> dict[str, Any]:
    """Stage 4 for one shard: add ``plan.count`` rows with global ids; write its three files.

    The files are written under temporary names (node-local scratch for an object store) and
    renamed (uploaded) into place once all three are complete, so an attempt that dies leaves
    only ``.*.tmp`` files and a retry rewrites the shard whole. ``external_ids=False``
    stores ``str(internal id)`` as the external id (inputs without ids). Returns the shard's
    manifest entry, with the task's record under ``task``
    (:func:`~echoseek.index.tasks.task_record`).
    """
    start = time.perf_counter()
    reset_peak_rss()
    names = shard_names(plan.shard)
    with ExitStack() as files:
        tmp = {key: files.enter_context(writing(join(out_dir, names[key]))) for key in names}
        _write_shard(trained, batches, plan, tmp, normalize, external_ids)
        entry = _shard_entry(tmp, names, plan)
    return {**entry, "task": task_record(start)}


def fill_placement(
    rows: int, dim: int, bytes_per_vector: float, trained_bytes: int, batch_size: int, cpus: float
) -> Placement:
    """A fill task's memory: the worker, the input reader's buffers (a decoded row group), its
    codes and ids (``rows·bytes_per_vector``, four times: faiss grows an inverted list by
    doubling, and the measured peak per row was 3.5x the code at PQ32: BENCHMARKS.md, "Index
    build past one machine"), four batches of float32 vectors in flight and the trained index
    twice (object and deserialised). The float16 re-rank copy goes to its file as it is
    made."""
    need = READ_BUFFER_BYTES + 4 * rows * bytes_per_vector + 16 * batch_size * dim
    memory = int(WORKER_BASE_BYTES + need + 2 * trained_bytes)
    return Placement(memory=memory, num_cpus=cpus)


def sample_placement(rows: int, dim: int) -> Placement:
    """A sample task: its rows of the sample and the reader's buffers."""
    memory = WORKER_BASE_BYTES + READ_BUFFER_BYTES + 4 * dim * rows
    return Placement(memory=memory, num_cpus=0.5, exit_after=True)


def train_placement(params: IndexParams, num_cpus: float, num_gpus: float) -> Placement:
    """The train task: the sample three times (parts, concatenated, normalised) and the
    index being trained (centroids and k-means buffers, ~4x the trained index)."""
    sample = 4 * params.dim * params.train_size
    need = WORKER_BASE_BYTES + 3 * sample + 4 * params.trained_bytes
    return Placement(memory=int(need), num_cpus=num_cpus, num_gpus=num_gpus, exit_after=True)


def new_manifest(
    version: str,
    params: IndexParams,
    shards: list[dict[str, Any]],
    *,
    trained_sha256: str,
    model_uri: str = "",
    model_tracking_uri: str = "",
    dataset_sha256: str = "",
    vectors_sha256: str = "",
    tombstones: Sequence[int] = (),
    parent: str | None = None,
    default_nprobe: int | None = None,
    build: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest dict of a version (see :mod:`echoseek.index.manifest`)."""
    ntotal = sum(s["count"] for s in shards)
    next_id = max((s["id_start"] + s["count"] for s in shards), default=0)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": version,
        "parent": parent,
        "dim": params.dim,
        "metric": params.metric,
        "normalize": params.normalize,
        "factory": params.factory,
        "params": params.to_dict(),
        "default_nprobe": default_nprobe or params.nprobe,
        "default_rerank": False if params.exact else NATURAL_DISTANCE[params.metric],
        "default_rerank_depth": None,
        "ntotal": ntotal,
        "live": ntotal - len(tombstones),
        "next_id": next_id,
        "trained": {"file": TRAINED, "sha256": trained_sha256},
        "shards": sorted(shards, key=lambda s: s["id_start"]),
        "tombstones": sorted(int(t) for t in tombstones),
        "model_uri": model_uri,
        "model_tracking_uri": model_tracking_uri,  # where an MLflow model_uri resolves
        "dataset_sha256": dataset_sha256 or vectors_sha256,
        "vectors_sha256": vectors_sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build": build or {},
    }


def build_summary(manifest: dict[str, Any], params: IndexParams) -> dict[str, Any]:
    """What ``echoseek index build`` reports of a published version (its manifest's version,
    layout, defaults and build timings)."""
    keys = ("version", "factory", "ntotal", "dim", "metric", "default_nprobe", "default_rerank")
    return {
        **{key: manifest[key] for key in keys},
        "shards": len(manifest["shards"]),
        "bytes_per_vector": params.bytes_per_vector,
        **manifest["build"],
    }


def summary_text(s: dict[str, Any]) -> str:
    """The terminal line of ``echoseek index build``'s summary (``jobs.index_build.run``)."""
    nodes = len({f["node_id"] for f in s.get("shard_fills", [])})
    where = f" on {nodes} nodes" if nodes > 1 else ""
    line = (
        f"indexed {s['ntotal']} vectors (dim {s['dim']}, {s['factory']}, {s['shards']} shards"
        f"{where}) as {s['output']}/{s['version']} in {s['seconds']:.1f} s"
    )
    point = s.get("calibration")
    if point:
        line += (
            f"; default nprobe {point['nprobe']} (recall@10 {point['recall@10']:.3f} on "
            f"{point['n_queries']} sampled vectors, rerank {point['rerank'] or 'off'})"
        )
    return line


def array_batches(
    vectors: np.ndarray,
    ids: Sequence[str] | None = None,
    metadata: dict[str, Sequence[Any]] | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[VectorBatch]:
    """In-memory vectors as :class:`VectorBatch` es (ids default to row numbers).

    ``ids`` must be non-null and unique.
    """
    n = len(vectors)
    if ids is not None:
        _check_id_list(ids)
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        batch_ids = [str(i) for i in (ids[s:e] if ids is not None else range(s, e))]
        meta = {k: list(v[s:e]) for k, v in (metadata or {}).items()}
        yield VectorBatch(batch_ids, np.ascontiguousarray(vectors[s:e], dtype=np.float32), meta)


def _check_id_list(ids: Sequence[Any]) -> None:
    seen: dict[str, int] = {}
    for row, item in enumerate(ids):
        if item is None:
            raise InputError(f"ids: row {row} has a null id")
        key = str(item)
        if key in seen:
            raise InputError(
                f"ids: duplicate vector id {key!r} (rows {seen[key]} and {row}); ids must be unique"
            )
        seen[key] = row


def _metadata_table(batch: VectorBatch, ids: np.ndarray, external_ids: bool) -> pa.Table:
    n = len(ids)
    columns: dict[str, Any] = {
        "internal_id": ids,
        "id": batch.ids if external_ids else [str(i) for i in ids],
    }
    for key in METADATA_TYPES:
        columns[key] = batch.metadata.get(key, [None] * n)
    return pa.table(columns, schema=METADATA_SCHEMA)


def _write_shard(
    trained: np.ndarray,
    batches: Iterable[VectorBatch],
    plan: ShardPlan,
    paths: dict[str, Path],
    normalize: bool,
    external_ids: bool,
) -> None:
    index = deserialize_index(trained)
    writer = pq.ParquetWriter(paths["metadata"], METADATA_SCHEMA, compression="zstd")
    done = 0
    # the float16 re-rank copy is written through the file, not a memory map: a map's
    # dirty pages counted in the task's memory until unmapped (2·dim bytes per row)
    with writer, open(paths["vectors"], "wb") as vectors:
        np.lib.format.write_array_header_1_0(vectors, _npy_header(plan.count, index.d))
        for batch in batches:
            n = len(batch.ids)
            if done + n > plan.count:
                raise InputError(f"shard {plan.shard}: input has more rows than planned")
            x = normalize_rows(batch.vectors) if normalize else batch.vectors
            ids = np.arange(plan.id_start + done, plan.id_start + done + n, dtype=np.int64)
            index.add_with_ids(x, ids)
            vectors.write(x.astype("<f2").tobytes())
            writer.write_table(_metadata_table(batch, ids, external_ids))
            done += n
    if done != plan.count:
        raise InputError(f"shard {plan.shard}: input ended after {done} of {plan.count} rows")
    faiss.write_index(index, str(paths["file"]))


def _npy_header(rows: int, dim: int) -> dict[str, Any]:
    return {"descr": "<f2", "fortran_order": False, "shape": (rows, dim)}


def _shard_entry(paths: dict[str, Path], names: dict[str, str], plan: ShardPlan) -> dict[str, Any]:
    return {
        "file": names["file"],
        "count": plan.count,
        "sha256": sha256_file(paths["file"]),
        "id_start": plan.id_start,
        "vectors": {"file": names["vectors"], "sha256": sha256_file(paths["vectors"])},
        "metadata": {"file": names["metadata"], "sha256": sha256_file(paths["metadata"])},
    }


def _source_checksums(source: VectorSource, use_ray: bool) -> Pending:
    """The input files' SHA-256, one task per file, for an input without a descriptor's
    (an artifact's checksum is its descriptor's): streamed, in tasks beside the build."""
    if source.sha256:
        return Pending([], on_ray=use_ray)
    calls = [(f.path,) for f in source.files]
    return submit(sha256, calls, Placement(memory=WORKER_BASE_BYTES, num_cpus=0.25), use_ray)


def _cluster_has_gpus(use_ray: bool) -> bool:
    if not use_ray:
        return False
    ensure_ray()
    return cluster_has_gpus()
