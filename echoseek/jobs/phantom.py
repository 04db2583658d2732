"""Generate a phantom ultrasound breath-hold cine: the stand-in for the team's clinical data.

    echoseek phantom                                   # 445 frames, 128 x 128, into work/phantom
    echoseek phantom output=work/p seed=3 frames=200 mat_format=v7.3 overwrite=true
    python -m echoseek.jobs.phantom CONFIG.yaml positive_ratio=0.25

Writes ``dataset.mat`` (variable ``frames``, H x W x N uint8), ``dataset_labels.csv``
(``frame_index,label``), ``invivo.png`` (the query) and ``phantom.json`` (provenance) into
``output``, atomically. Every generator parameter of
:class:`~echoseek.phantom.generate.PhantomParams` is a top-level option (``frames``, ``seed``,
``positive_ratio``, ``breath_holds``, ``hard_negative_rate``, ...); the label rule and the
tolerance calibration are described in :mod:`echoseek.phantom.generate`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from echoseek.jobs.runner import run_job
from echoseek.phantom.cine import PhantomParams
from echoseek.phantom.generate import generate_phantom
from echoseek.phantom.write import check_output, write_phantom


@dataclass(frozen=True)
class Config(PhantomParams):
    """Options of ``echoseek phantom``: the generator's parameters plus where to write.

    ``input`` is unused (the phantom is made from nothing) but present so that every job has
    ``input`` and ``output``.
    """

    input: str | None = None
    output: str = "work/phantom"
    mat_format: Literal["v5", "v7.3"] = "v5"
    overwrite: bool = False

    def params(self) -> PhantomParams:
        """The generator's part of this config."""
        names = [f.name for f in dataclasses.fields(PhantomParams)]
        return PhantomParams(**{name: getattr(self, name) for name in names})


def run(cfg: Config) -> dict[str, Any]:
    """Generate the phantom and write it to ``cfg.output``; returns a JSON-able summary."""
    out = Path(cfg.output)
    check_output(out, cfg.overwrite)  # fail before spending time on generation
    start = time.perf_counter()
    phantom = generate_phantom(cfg.params())
    generated = time.perf_counter() - start
    write_phantom(phantom, out, mat_format=cfg.mat_format, overwrite=cfg.overwrite)
    return {
        "output": str(out),
        "files": sorted(p.name for p in out.iterdir()),
        "mat_format": cfg.mat_format,
        "frames": int(phantom.frames.shape[0]),
        "height": int(phantom.frames.shape[1]),
        "width": int(phantom.frames.shape[2]),
        "seed": cfg.seed,
        "positives": phantom.positives,
        "positive_ratio": phantom.positive_ratio,
        "tolerance_px": phantom.tolerance,
        "tolerance_calibrated": phantom.tolerance_calibrated,
        "reference_phase_px": phantom.reference_phase,
        "reference_frame": phantom.reference_frame,
        "hard_negatives": int(phantom.hard_negative.sum()),
        "breath_hold_frames": int(phantom.breath_hold.sum()),
        "seconds": {"generate": generated, "total": time.perf_counter() - start},
    }


def summarize(s: dict[str, Any]) -> str:
    """One line for the terminal."""
    return (
        f"phantom: {s['frames']} frames {s['height']}x{s['width']}, {s['positives']} positive "
        f"({s['positive_ratio']:.1%}, tolerance {s['tolerance_px']:.2f} px), "
        f"{s['hard_negatives']} hard negatives -> {s['output']} "
        f"[{s['mat_format']}, {s['seconds']['total']:.1f} s]"
    )


def main(argv: Sequence[str] | None = None, prog: str = "echoseek phantom") -> int:
    """Command-line entry point."""
    return run_job(Config, run, argv, prog, description=__doc__, summarize=summarize)


if __name__ == "__main__":
    sys.exit(main())
