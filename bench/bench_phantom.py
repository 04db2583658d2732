"""Phantom generator: speed and memory, .mat v5 vs v7.3, and how hard its retrieval task is.

    .venv/bin/python bench/bench_phantom.py [--reps 2] [--seed 0]

1. ``generate_phantom`` wall time (best of ``--reps``) and peak traced memory (tracemalloc,
   numpy buffers included) at the default size and at twice the resolution, against the
   10 s budget for the default cine. numpy's FFT and scipy.ndimage run on one thread.
2. ``dataset.mat`` as MATLAB v5 (scipy.io, zlib) beside v7.3 (HDF5, gzip chunks of 16 frames):
   write time, file size, reading the whole stack, and reading only the first 16 frames (the
   streaming case; v5 must inflate the whole variable).
3. The retrieval task at defaults: AP of the query, P@10 and leave-one-out mAP (every positive
   queries the rest) for a random ranking, raw-pixel MSE, the raw-pixel baseline of
   ``echoseek evaluate`` (32 px, cosine), a translation-invariant descriptor (FFT2 magnitude,
   cosine) and the phase oracle (phase and view known), plus how many hard negatives each puts
   among the query's top-R (R = number of positives) and the best rank any hard negative
   reaches. The default phantom is meant to leave the baseline's mAP at about 0.5-0.7. The
   oracle is exact for the query (distance to the reference depth is the label rule); in
   leave-one-out a positive at the edge of the tolerance is nearer some negatives than the
   positives on the far side, so its LOO mAP is just below 1.
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

from echoseek.baseline import pixel_embed
from echoseek.phantom.generate import Phantom, PhantomParams, generate_phantom
from echoseek.phantom.write import write_mat

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


def cosine(x: np.ndarray) -> np.ndarray:
    """N x N cosine similarity of the rows of ``x``."""
    v = x / np.linalg.norm(x, axis=1, keepdims=True)
    return v @ v.T


def neg_mse(x: np.ndarray) -> np.ndarray:
    """N x N minus the mean squared difference of rows, ``-(|a|^2 + |b|^2 - 2 a.b) / D``."""
    sq = (x**2).sum(axis=1)
    return -(sq[:, None] + sq[None, :] - 2 * x @ x.T) / x.shape[1]


def retrieval_table(phantom: Phantom, seed: int) -> None:
    labels = phantom.labels
    n, r = len(labels), int(labels.sum())
    images = np.concatenate([phantom.frames, phantom.query[None]])  # the query is the last row
    pixels = images.reshape(n + 1, -1).astype(np.float64)
    spectra = np.abs(np.fft.rfft2(images.astype(np.float64))).reshape(n + 1, -1)
    oracle = np.concatenate([phantom.phase, [phantom.reference_phase]])
    hard = np.concatenate([phantom.hard_negative, [False]])
    similarity = {  # (N+1) x (N+1), higher = more alike
        "random": np.random.default_rng(seed).standard_normal((n + 1, n + 1)),
        "raw-pixel MSE": neg_mse(pixels),
        "raw-pixel baseline (32 px, cosine)": cosine(pixel_embed(list(images)).astype(np.float64)),
        "FFT2 magnitude, cosine (shift-invariant)": cosine(spectra),
        "phase oracle": -np.abs(oracle[:, None] - oracle[None]) - 1e3 * (hard[:, None] | hard),
    }
    print(
        f"\n### Retrieval on the default phantom ({n} frames, {r} positive, "
        f"{int(phantom.hard_negative.sum())} hard negatives, "
        f"{int(phantom.artifact.sum())} with an artefact)\n"
    )
    print(
        f"| ranking | query AP | P@10 | LOO mAP | hard negatives in top {r} "
        "| best hard-negative rank |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, sim in similarity.items():
        score = sim[n, :n]
        order = np.argsort(-score, kind="stable")
        ap = average_precision_score(labels, score)
        p10 = labels[order[:10]].mean()
        loo = _loo_map(sim[:n, :n], labels)
        hard_top = int(phantom.hard_negative[order[:r]].sum())
        best = int(np.flatnonzero(phantom.hard_negative[order])[0]) + 1
        print(f"| {name} | {ap:.3f} | {p10:.2f} | {loo:.3f} | {hard_top} | {best} |")


def _loo_map(sim: np.ndarray, labels: np.ndarray) -> float:
    """Mean AP of every positive querying the other frames (``echoseek evaluate``'s LOO mAP)."""
    queries = np.flatnonzero(labels == 1)
    aps = []
    for q in queries:
        keep = np.arange(len(labels)) != q
        aps.append(average_precision_score(labels[keep], sim[q, keep]))
    return float(np.mean(aps))


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
