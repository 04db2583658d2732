"""The shared command-line entry of every job: parse, load config, run, report errors.

``echoseek <job> [CONFIG.yaml] [key=value ...]`` and ``python -m echoseek.jobs.<job> ...`` both
end here. A user error (:class:`~echoseek.errors.EchoseekError`) prints one line naming the
problem and returns 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from echoseek.config import load_config
from echoseek.errors import EchoseekError

C = TypeVar("C")


def build_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The argument parser shared by all jobs: an optional YAML file and ``key=value`` items."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="[CONFIG.yaml] [key=value ...]",
        help="an optional YAML config followed by dotted overrides, e.g. train.lr=0.1",
    )
    parser.add_argument("--json", action="store_true", help="print the job summary as JSON")
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
    parser = build_parser(prog, description)
    ns = parser.parse_args(argv)
    try:
        path, overrides = split_args(ns.args)
        if any("=" not in item for item in overrides):
            bad = next(item for item in overrides if "=" not in item)
            raise EchoseekError(f"bad argument '{bad}': expected key=value after the config file")
        cfg = load_config(config_cls, path, overrides)
        summary = run(cfg)
    except EchoseekError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
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


def output_lines(summary: Mapping[str, Any]) -> list[str]:
    """Where a training job's model, MLflow run, checkpoints (and registry entry) went."""
    lines = [
        f"model: {summary['output']}  (MLflow run {summary['run_id']})",
        f"checkpoints: {summary['storage']}",
    ]
    if summary.get("registered"):
        lines.append(f"registered: {summary['registered']}")
    return lines
