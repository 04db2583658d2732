"""The one live line per epoch, printed by the Train controller and relayed to the driver."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from echoseek.progress import epoch_line, eta_seconds


class EpochPrinter:
    """Ray Train callback: one line per epoch (epoch, loss, img/s, ETA, validation metric).

    It runs in the Train controller, whose output a quiet driver does not forward
    (:func:`echoseek.ray_session.ensure_ray`), so its lines travel through a Ray queue that
    :meth:`relay` prints on the driver's terminal, unprefixed, while training runs. The queue's
    actor lives on the driver's node: a run that loses another node (and resumes) keeps its
    lines; should the queue die anyway, lines are dropped, never the run.
    """

    def __init__(self, epochs: int, metric: str) -> None:
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.epochs = epochs
        self.metric = metric
        self.started = time.perf_counter()
        self.done = 0
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})

    def emit(self, line: str) -> None:
        """Send one line to the driver (dropped when the queue is gone)."""
        from ray.exceptions import RayActorError

        with contextlib.suppress(RayActorError):
            self.queue.put(line)

    @contextlib.contextmanager
    def relay(self) -> Iterator[None]:
        """Print the emitted lines on this (the driver's) terminal while the block runs."""
        from ray.exceptions import RayActorError
        from ray.util.queue import Empty

        stop = threading.Event()

        def drain(timeout: float) -> None:
            while True:
                try:
                    print(self.queue.get(timeout=timeout), flush=True)
                except (Empty, RayActorError):
                    return

        def loop() -> None:
            while not stop.is_set():
                drain(0.5)

        thread = threading.Thread(target=loop, name="echoseek-epoch-lines", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            drain(0.1)
            with contextlib.suppress(RayActorError):
                self.queue.shutdown()

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        m = metrics[0] if metrics else {}
        self.done += 1
        epoch = int(m.get("epoch", self.done - 1)) + 1
        elapsed = time.perf_counter() - self.started
        eta = eta_seconds(elapsed, self.done, self.epochs - epoch + self.done)
        images_per_s = sum(float(x.get("images_per_s", 0.0)) for x in metrics)
        value = m.get(self.metric)
        self.emit(
            epoch_line(
                epoch,
                self.epochs,
                float(m.get("loss", float("nan"))),
                images_per_s,
                eta,
                None if value is None else float(value),
                self.metric,
            )
        )

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        for rank, exc in worker_exceptions.items():
            first = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            self.emit(f"worker {rank} failed: {first[0]} (restarting from the last checkpoint)")


def as_user_callback(printer: EpochPrinter) -> Any:
    """Wrap :class:`EpochPrinter` as a ``ray.train.UserCallback`` (imported lazily)."""
    from ray.train import UserCallback

    class _Printer(UserCallback):  # type: ignore[misc]
        def after_report(self, run_context: Any, metrics: Any, checkpoint: Any) -> None:
            printer.after_report(run_context, metrics, checkpoint)

        def after_exception(self, run_context: Any, worker_exceptions: Any) -> None:
            printer.after_exception(run_context, worker_exceptions)

    return _Printer()
