"""Add vectors to an index as a new version, reusing its trained quantizers (no retraining).

    echoseek index add input=work/new_vectors output=work/index
    echoseek index add input=more.npy output=work/index num_shards=4 use_ray=true

``input`` is a vectors artifact, a ``.npy`` file or a folder (as for ``index build``);
``output`` is the index root. The new version holds the latest version's shards (hard-linked)
plus ``num_shards`` new ones; new vectors get internal ids from the old ``next_id`` on.
Readers of the old version are unaffected; ``LATEST`` moves only when the new one is complete.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from echoseek.errors import ConfigError
from echoseek.index.update import add_vectors
from echoseek.jobs.runner import run_job


@dataclass
class Config:
    """Options of ``echoseek index add``."""

    input: str = ""  # the vectors to add
    output: str = ""  # the index root
    num_shards: int = 1
    use_ray: bool = False  # fill the new shards as parallel Ray tasks
    cpus_per_shard: float = 1.0
    retention: int = 3  # versions kept under the index root (0 keeps all)

    def __post_init__(self) -> None:
        if self.num_shards <= 0:
            raise ConfigError(f"num_shards: must be positive, got {self.num_shards}")
        if self.retention < 0:
            raise ConfigError(f"retention: must be >= 0, got {self.retention}")


def run(cfg: Config) -> dict[str, Any]:
    """Publish latest + ``cfg.input`` as a new version; returns a summary."""
    if not cfg.input or not cfg.output:
        raise ConfigError("input (vectors) and output (index root) are required")
    start = time.perf_counter()
    manifest = add_vectors(
        cfg.output,
        cfg.input,
        num_shards=cfg.num_shards,
        use_ray=cfg.use_ray,
        cpus_per_shard=cfg.cpus_per_shard,
        retention=cfg.retention,
    )
    return {
        "output": cfg.output,
        "version": manifest["version"],
        "parent": manifest["parent"],
        "ntotal": manifest["ntotal"],
        "live": manifest["live"],
        "shards": len(manifest["shards"]),
        "seconds": time.perf_counter() - start,
    }


def summarize(s: dict[str, Any]) -> str:
    """One line for the terminal."""
    return (
        f"published {s['output']}/{s['version']} (from {s['parent']}): {s['ntotal']} vectors "
        f"in {s['shards']} shards, {s['live']} live, in {s['seconds']:.1f} s"
    )


def main(argv: Sequence[str] | None = None, prog: str = "echoseek index add") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, __doc__, summarize)


if __name__ == "__main__":
    sys.exit(main())
