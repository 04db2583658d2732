"""How a build's Ray tasks are placed, retried and recorded.

Every stage of a build maps one function over a list of calls (one per shard, file or
partition). :func:`submit` starts them as Ray tasks, each with a :class:`Placement`:

* ``memory``: the bytes the task holds at its peak, a scheduler reservation
  (``ray.remote(memory=…)``), so a node is never given more tasks than its memory holds; a task
  larger than every node's memory is refused before anything starts (:func:`check_fits`);
* ``SPREAD`` scheduling, so a stage's tasks land on as many nodes as have room;
* ``max_retries``: a task lost with its worker or node runs again elsewhere (system failures
  only: an error the task raises itself, such as bad input, fails the stage at once). Tasks
  are idempotent: they write under temporary names and rename (:func:`publish_file`);
* a record of where and how long each task ran, and its own peak RSS: a task that reports it
  resets its process's peak first (:func:`reset_peak_rss`; Ray reuses worker processes);
* ``exit_after`` (``max_calls=1``): the worker exits after a task whose memory it would
  otherwise keep for the next task (the sample and train tasks; at 10 M vectors a fill task
  peaked at 1.0 GiB in a reused worker, where the same fill in a fresh process peaks at 0.47).

``use_ray=False`` runs the same calls one after another in this process (tests, laptops).
:func:`gather` waits for all, in call order; :func:`as_completed` yields them as they finish;
both cancel the rest when one fails and re-raise an echoseek error as itself.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoseek.errors import EchoseekError, InputError
from echoseek.ray_session import ensure_ray

MIB = 1 << 20
WORKER_BASE_BYTES = (
    300 * MIB
)  # a Ray worker with numpy, pyarrow, faiss and echoseek.index (measured: ~250)
READ_BUFFER_BYTES = 256 * MIB  # a Parquet reader's buffers for one decoded row group (measured)
RETRIES = 3


@dataclass(frozen=True)
class Placement:
    """What one task asks of the cluster."""

    memory: int
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    retries: int = RETRIES
    exit_after: bool = False

    def options(self) -> dict[str, Any]:
        """``ray.remote`` options of a task with this placement."""
        return {
            "memory": int(self.memory),
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "scheduling_strategy": "SPREAD",
            "max_retries": self.retries,
            "retry_exceptions": False,
        }


@dataclass
class Pending:
    """Started calls: per call, its Ray object ref(s), or (``use_ray=False``) its result."""

    outputs: list[Any]
    on_ray: bool


def submit(
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    placement: Placement | Sequence[Placement],
    use_ray: bool,
    returns: int = 1,
) -> Pending:
    """Start ``fn(*call)`` for every call (one placement for all, or one per call).

    ``returns > 1``: ``fn`` returns a list of that length, each item its own Ray object (a
    later stage's task takes the items it needs, never the whole list). Outside Ray the calls
    run here, now, one after another. Arguments that are object refs (outputs of an earlier
    stage) reach the task as their values.
    """
    places = [placement] * len(calls) if isinstance(placement, Placement) else list(placement)
    if not use_ray:
        return Pending([fn(*call) for call in calls], on_ray=False)
    import ray

    ensure_ray()
    for p in set(places):
        check_fits(p)
    tasks = {done: ray.remote(max_calls=1 if done else 0)(fn) for done in (False, True)}
    refs = [
        tasks[p.exit_after].options(**p.options(), num_returns=returns).remote(*c)
        for c, p in zip(calls, places, strict=True)
    ]
    return Pending(refs, on_ray=True)


def as_completed(pending: Pending) -> Iterator[tuple[int, Any]]:
    """``(call number, result)`` as each call finishes; on a failure cancel the others."""
    if not pending.on_ray:
        yield from enumerate(pending.outputs)
        return
    import ray

    number = {ref: i for i, ref in enumerate(pending.outputs)}
    left = list(pending.outputs)
    try:
        while left:
            done, left = ray.wait(left, num_returns=1)
            yield number[done[0]], ray.get(done[0])
    except BaseException as exc:
        cancel(left)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, EchoseekError):
            raise cause from None
        raise


def wait(pending: Pending) -> None:
    """Wait until every call has finished, without fetching results (a stage's end)."""
    if pending.on_ray and pending.outputs:
        import ray

        refs = [r for out in pending.outputs for r in (out if isinstance(out, list) else [out])]
        ray.wait(refs, num_returns=len(refs), fetch_local=False)


def gather(pending: Pending) -> list[Any]:
    """Every call's result, in call order."""
    out: list[Any] = [None] * len(pending.outputs)
    for i, result in as_completed(pending):
        out[i] = result
    return out


def run(
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    placement: Placement | Sequence[Placement],
    use_ray: bool,
) -> list[Any]:
    """:func:`submit` then :func:`gather`."""
    return gather(submit(fn, calls, placement, use_ray))


def cancel(refs: list[Any]) -> None:
    """Cancel running tasks and wait for them to stop writing."""
    import ray

    for ref in refs:
        ray.cancel(ref, force=True)
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=60)


def check_fits(placement: Placement) -> None:
    """Refuse a task whose memory no alive node offers (Ray would wait for it forever)."""
    import ray

    offers = [n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")]
    most = max(offers, default=0)
    if offers and placement.memory > most:
        raise InputError(
            f"a build task needs {placement.memory / MIB:.0f} MiB of memory but the largest "
            f"node offers {most / MIB:.0f} MiB: use more, smaller shards (build.rows_per_shard)"
        )


def task_record(start: float) -> dict[str, Any]:
    """Where and how long a task ran: ``node_id``, ``seconds``, ``peak_rss_mib`` (the
    process's peak since :func:`reset_peak_rss`: the worker's own memory and the task's)."""
    return {
        "node_id": current_node_id(),
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": peak_rss_mib(),
    }


def current_node_id() -> str:
    """The Ray node this process runs on (``"local"`` outside Ray)."""
    if "ray" not in sys.modules:
        return "local"
    import ray

    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else "local"


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB: ``VmHWM`` of
    ``/proc/self/status`` on Linux (``ru_maxrss`` would also count the parent's memory a
    process was forked from), else ``ru_maxrss``."""
    kib = _status_kib("VmHWM")
    if kib is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kib / 1024


def resident_bytes() -> int:
    """This process's resident set now (``VmRSS``; 0 where /proc is absent)."""
    return (_status_kib("VmRSS") or 0) * 1024


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> None:
    """Start this process's peak RSS afresh (Linux: ``5`` to ``/proc/self/clear_refs``), so
    that a task run by a reused worker reports its own peak, not an earlier task's."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def remove_temporaries(folder: Path) -> None:
    """Remove what attempts that died left behind (``.*.tmp`` files) in ``folder``."""
    for p in folder.glob(".*.tmp"):
        p.unlink(missing_ok=True)
