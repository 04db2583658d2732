"""Phantom generator: speed and memory, .mat v5 vs v7.3, and how hard its retrieval task is.

    .venv/bin/python bench/bench_phantom.py [--reps 2] [--seed 0]

1. ``generate_phantom`` wall time (best of ``--reps``) and peak traced memory (tracemalloc,
   numpy buffers included) at the default size and at twice the resolution, against the
   10 s budget for the default cine. numpy's FFT and scipy.ndimage run on one thread.
2. ``dataset.mat`` as MATLAB v5 (scipy.io, zlib) beside v7.3 (HDF5, gzip chunks of 16 frames):
   write time, file size, reading the whole stack, and reading only the first 16 frames (the
   streaming case; v5 must inflate the whole variable).
3. The retrieval task at defaults: AP of the query and P@10 for a random ranking, raw-pixel
   MSE, a translation-invariant descriptor (FFT2 magnitude, cosine) and the phase oracle, plus
   how many hard negatives each puts among its top-R (R = number of positives) and the best
   rank any hard negative reaches.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from sklearn.metrics import average_precision_score

from echoseek.data.phantom import Phantom, PhantomParams, generate_phantom
from echoseek.data.phantom_io import write_mat

BUDGET_S = 10.0


def timed_generate(params: PhantomParams, reps: int) -> tuple[Phantom, float, float]:
    """(phantom, best wall seconds, peak traced MiB)."""
    best = float("inf")
    phantom = None
    for _ in range(reps):
        start = time.perf_counter()
        phantom = generate_phantom(params)
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    generate_phantom(params)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert phantom is not None
    return phantom, best, peak / 2**20


def generation_table(reps: int, seed: int) -> Phantom:
    print("### Generation (one core)\n")
    print("| cine | wall s | frames/s | peak MiB |")
    print("|---|---:|---:|---:|")
    walls = []
    phantoms = []
    for size in (128, 256):
        params = PhantomParams(height=size, width=size, seed=seed)
        phantom, wall, peak = timed_generate(params, reps)
        walls.append(wall)
        phantoms.append(phantom)
        label = f"{params.frames} x {size} x {size}"
        print(f"| {label} | {wall:.2f} | {params.frames / wall:.0f} | {peak:.0f} |")
    print(
        f"\ndefault cine: {walls[0]:.2f} s = {walls[0] / BUDGET_S:.2f}x the {BUDGET_S:.0f} s "
        f"budget; 4x the pixels costs {walls[1] / walls[0]:.1f}x the time"
    )
    return phantoms[0]


def mat_table(phantom: Phantom) -> None:
    print("\n### dataset.mat formats (445 x 128 x 128 uint8)\n")
    print("| format | write s | size MiB | read all s | read first 16 frames s |")
    print("|---|---:|---:|---:|---:|")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("v5", "v7.3"):
            path = Path(tmp) / f"{fmt}.mat"
            start = time.perf_counter()
            write_mat(path, phantom.frames, fmt)
            write_s = time.perf_counter() - start
            read_all, read_16 = _read_times(path, fmt, phantom.frames)
            size = path.stat().st_size / 2**20
            rows[fmt] = (write_s, size, read_all, read_16)
            print(f"| {fmt} | {write_s:.3f} | {size:.2f} | {read_all:.3f} | {read_16:.4f} |")
    (w5, s5, r5, f5), (w7, s7, r7, f7) = rows["v5"], rows["v7.3"]
    print(
        f"\nv7.3 / v5: write {w7 / w5:.2f}x, size {s7 / s5:.2f}x, read all {r7 / r5:.2f}x, "
        f"first 16 frames {f7 / f5:.3f}x"
    )


def _read_times(path: Path, fmt: str, frames: np.ndarray) -> tuple[float, float]:
    expected = np.transpose(frames, (1, 2, 0))
    start = time.perf_counter()
    if fmt == "v5":
        data = scipy.io.loadmat(path)["frames"]
    else:
        with h5py.File(path, "r") as f:
            data = np.transpose(f["frames"][()], (2, 1, 0))
    read_all = time.perf_counter() - start
    assert np.array_equal(data, expected)
    start = time.perf_counter()
    if fmt == "v5":
        first = scipy.io.loadmat(path)["frames"][:, :, :16]
    else:
        with h5py.File(path, "r") as f:
            first = np.transpose(f["frames"][:16], (2, 1, 0))
    read_16 = time.perf_counter() - start
    assert np.array_equal(first, expected[:, :, :16])
    return read_all, read_16


def retrieval_table(phantom: Phantom, seed: int) -> None:
    labels = phantom.labels
    r = int(labels.sum())
    frames = phantom.frames.reshape(len(labels), -1).astype(np.float64)
    query = phantom.query.reshape(-1).astype(np.float64)
    spectra = np.abs(np.fft.rfft2(phantom.frames.astype(np.float64))).reshape(len(labels), -1)
    q_spec = np.abs(np.fft.rfft2(phantom.query.astype(np.float64))).reshape(-1)
    scores = {
        "random": np.random.default_rng(seed).standard_normal(len(labels)),
        "raw-pixel MSE": -((frames - query) ** 2).mean(axis=1),
        "FFT2 magnitude, cosine (shift-invariant)": spectra
        @ q_spec
        / (np.linalg.norm(spectra, axis=1) * np.linalg.norm(q_spec)),
        "phase oracle": -np.abs(phantom.phase - phantom.reference_phase)
        - 1e3 * phantom.hard_negative,
    }
    print(
        f"\n### Retrieval on the default phantom ({len(labels)} frames, {r} positive, "
        f"{int(phantom.hard_negative.sum())} hard negatives)\n"
    )
    print(f"| ranking | query AP | P@10 | hard negatives in top {r} | best hard-negative rank |")
    print("|---|---:|---:|---:|---:|")
    for name, score in scores.items():
        order = np.argsort(-score, kind="stable")
        ap = average_precision_score(labels, score)
        p10 = labels[order[:10]].mean()
        hard = int(phantom.hard_negative[order[:r]].sum())
        best = int(np.flatnonzero(phantom.hard_negative[order])[0]) + 1
        print(f"| {name} | {ap:.3f} | {p10:.2f} | {hard} | {best} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    phantom = generation_table(args.reps, args.seed)
    mat_table(phantom)
    retrieval_table(phantom, args.seed)


if __name__ == "__main__":
    main()
