"""The ``echoseek`` console script: a thin dispatcher over the job modules.

``echoseek <command> [CONFIG.yaml] [key=value ...]``. Each command is a module in
:mod:`echoseek.jobs` with a ``main(argv, prog)`` function; modules are imported only when their
command runs, so ``echoseek --help`` stays fast (no torch, no Ray).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# command -> (job module, one-line help). Two-word commands ("index build") use a space.
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("echoseek.jobs.phantom", "generate a phantom ultrasound breath-hold cine"),
    "ingest": ("echoseek.jobs.ingest", "convert .mat stacks or image folders to a dataset dir"),
    "relabel": ("echoseek.jobs.relabel", "apply label corrections as a new dataset version"),
    "evaluate": ("echoseek.jobs.evaluate", "score retrieval (AP, mAP, P@K, lift, latency)"),
    "anomaly": ("echoseek.jobs.anomaly", "kNN anomaly scores against normal items (AUROC, AP)"),
    "pretrain": ("echoseek.jobs.pretrain", "self-supervised pretraining on Ray Train"),
    "finetune": ("echoseek.jobs.finetune", "FastAP fine-tuning of a pretrained encoder"),
    "tune": ("echoseek.jobs.tune", "hyperparameter sweep of pretrain or finetune on Ray Tune"),
    "embed": ("echoseek.jobs.embed", "embed a dataset with a model into a vectors artifact"),
    "index build": ("echoseek.jobs.index_build", "build a sharded faiss index version"),
    "index eval": ("echoseek.jobs.index_eval", "recall/QPS of an index over an nprobe sweep"),
    "index add": ("echoseek.jobs.index_add", "add vectors to an index as a new version"),
    "index delete": ("echoseek.jobs.index_delete", "tombstone ids in a new index version"),
    "serve": ("echoseek.jobs.serve", "run the search service (Ray Serve) in the foreground"),
    "search": ("echoseek.jobs.search", "query a running search service: the top-K table"),
    "feedback export": (
        "echoseek.jobs.feedback_export",
        "the service's feedback marks (or a feedback log file) as a labels CSV",
    ),
    "model promote": (
        "echoseek.jobs.model_promote",
        "register a model (@candidate); make it @champion if it beats the champion",
    ),
    "report": ("echoseek.jobs.report", "the team's report set (figures, markdown, HTML, PDF)"),
    "demo": ("echoseek.jobs.demo", "run the whole pipeline on phantom data and summarise"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: echoseek <command> [CONFIG.yaml] [key=value ...]",
        "",
        "echoseek finds the images in a corpus most similar to a query image.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'echoseek <command> --help' for the options of one command."]
    return "\n".join(lines)


def _resolve(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """Find the longest command name at the head of ``argv``."""
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            return name, list(argv[words:])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a job's ``main``; unknown commands exit 2 with a one-line error."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    found = _resolve(args)
    if found is None:
        print(
            f"echoseek: error: unknown command '{args[0]}' (known: {', '.join(COMMANDS)})",
            file=sys.stderr,
        )
        return 2
    name, rest = found
    module = importlib.import_module(COMMANDS[name][0])
    code: int = module.main(rest, prog=f"echoseek {name}")
    return code


if __name__ == "__main__":
    sys.exit(main())
