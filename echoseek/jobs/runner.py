"""The shared command-line entry of every job: parse, load config, run, report errors.

``echoseek <job> [CONFIG.yaml] [key=value ...]`` and ``python -m echoseek.jobs.<job> ...`` both
end here. A user error (:class:`~echoseek.errors.EchoseekError`) prints one line naming the
problem and returns 2; no traceback. An output directory that cannot be created is such an
error, found before the job starts. Ctrl-C returns 130 and SIGTERM 143, each with one line;
both unwind through the job's normal exception path, so staging directories are removed.
``--help`` lists every config key with its default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any, TypeVar

from echoseek.config import config_help, load_config, override_example
from echoseek.errors import EchoseekError
from echoseek.ray_session import set_verbosity
from echoseek.storage import check_output_dir

C = TypeVar("C")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


def build_parser(
    prog: str, description: str | None, config_cls: type | None = None
) -> argparse.ArgumentParser:
    """The argument parser shared by all jobs: an optional YAML file and ``key=value`` items."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=config_help(config_cls) if config_cls is not None else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="[CONFIG.yaml] [key=value ...]",
        help="an optional YAML config followed by key=value overrides of the config keys "
        f"listed below{override_example(config_cls) if config_cls is not None else ''}",
    )
    parser.add_argument("--json", action="store_true", help="print the job summary as JSON")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show Ray's and MLflow's own output"
    )
    return parser


def split_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """Split CLI words into (config path or None, overrides)."""
    if args and "=" not in args[0]:
        return args[0], list(args[1:])
    return None, list(args)


def run_job(
    config_cls: type[C],
    run: Callable[[C], dict[str, Any]],
    argv: Sequence[str] | None,
    prog: str,
    description: str | None = None,
    summarize: Callable[[dict[str, Any]], str] | None = None,
) -> int:
    """Parse ``argv``, load ``config_cls`` and call ``run``; map user errors to exit code 2."""
    parser = build_parser(prog, description, config_cls)
    ns = parser.parse_args(argv)
    set_verbosity(ns.verbose)
    try:
        with _sigterm_raises():
            path, overrides = split_args(ns.args)
            if any("=" not in item for item in overrides):
                bad = next(item for item in overrides if "=" not in item)
                raise EchoseekError(
                    f"bad argument '{bad}': expected key=value after the config file"
                )
            cfg = load_config(config_cls, path, overrides)
            _check_output(cfg)
            summary = run(cfg)
    except EchoseekError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    try:
        if ns.json:
            print(json.dumps(summary, indent=2, default=str))
        elif summarize is not None:
            print(summarize(summary))
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
    return 0


def _check_output(cfg: Any) -> None:
    """A local ``output`` dir that cannot be created fails early (not for ``output_is_file``)."""
    output = None if getattr(cfg, "output_is_file", False) else getattr(cfg, "output", None)
    if isinstance(output, str) and output and "://" not in output:
        check_output_dir(output)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the job runs, SIGTERM raises :class:`Terminated` (once; a second one kills)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, previous)
        raise Terminated

    previous = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def output_lines(summary: Mapping[str, Any]) -> list[str]:
    """Where a training job's model, MLflow run, checkpoints (and registry entry) went."""
    lines = [
        f"model: {summary['output']}  (MLflow run {summary['run_id']})",
        f"checkpoints: {summary['storage']}",
    ]
    if summary.get("registered"):
        lines.append(f"registered: {summary['registered']}")
    if "first_step_s" in summary:
        lines.append(
            f"feed: first step {summary['first_step_s']:.1f} s after start (worker loop at "
            f"{summary.get('worker_start_s', 0.0):.1f} s, first batch at "
            f"{summary.get('first_batch_s', 0.0):.1f} s), last epoch "
            f"{summary.get('images_per_s', 0.0):.0f} img/s per worker, "
            f"data wait {100 * summary.get('data_wait_fraction', 0.0):.0f} %"
        )
    return lines
