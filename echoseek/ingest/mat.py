"""Read 3-D frame stacks from MATLAB ``.mat`` files, v5 (scipy.io) and v7.3 (HDF5 via h5py).

Axes are given in MATLAB order (``size(frames)`` in MATLAB). A v7.3 file stores arrays
column-major, so h5py sees the axes reversed; this module hides that. The frame axis follows
the two conventions stacks are saved in:

* ``N x H x W`` (NumPy/Python style) when the last two axes are equal and the first differs
  (square frames), e.g. ``445 x 128 x 128``: axis 0;
* otherwise ``H x W x N``, MATLAB's convention for image stacks: axis 2;
* when all three lengths are equal the layout cannot be told and ``frame_axis`` must be given.

A stack with frames along the middle axis always needs ``frame_axis=1``.

The remaining two axes, in order, are image rows and columns. v7.3 stacks are streamed in
chunks of frames; a v5 file stores each variable as one (often zlib-compressed) block, so the
chosen variable is loaded whole (scipy cannot read part of it) and only chunked from memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from echoseek.errors import InputError
from echoseek.ingest.frames import check_dtype

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class MatStack:
    """A lazily read frame stack: frames come out as (n, height, width) arrays."""

    path: Path
    variable: str
    version: str
    matlab_shape: tuple[int, int, int]
    frame_axis: int
    dtype: np.dtype
    read: Callable[[int, int], np.ndarray]

    @property
    def num_frames(self) -> int:
        """Number of frames along the frame axis."""
        return self.matlab_shape[self.frame_axis]

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of one frame."""
        rows, cols = (a for a in range(3) if a != self.frame_axis)
        return self.matlab_shape[rows], self.matlab_shape[cols]

    def iter_chunks(self, chunk_frames: int = 64) -> Iterator[np.ndarray]:
        """Yield consecutive (n <= chunk_frames, H, W) blocks of frames."""
        for start in range(0, self.num_frames, chunk_frames):
            yield self.read(start, min(start + chunk_frames, self.num_frames))


def mat_version(path: Path) -> str:
    """``"v5"`` or ``"v7.3"`` from the file header; anything else is an InputError."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(520)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if len(head) >= 520 and head[512:520] == HDF5_SIGNATURE:
        return "v7.3"
    if head.startswith(HDF5_SIGNATURE):
        return "v7.3"  # plain HDF5 written without the MATLAB user block
    if len(head) >= 128 and head[:6] == b"MATLAB" and head[126:128] in (b"IM", b"MI"):
        return "v5"
    raise InputError(f"{path}: not a MATLAB v5 or v7.3 .mat file (unrecognised header)")


def open_mat_stack(
    path: str | Path, variable: str | None = None, frame_axis: int | None = None
) -> MatStack:
    """Open the 3-D frame stack ``variable`` (auto-detected if None) of a .mat file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if mat_version(path) == "v7.3":
        return _open_v73(path, variable, frame_axis)
    return _open_v5(path, variable, frame_axis)


def choose_variable(path: Path, shapes: dict[str, tuple[int, ...]], variable: str | None) -> str:
    """Pick the stack variable: the requested one, or the only 3-D one."""
    listing = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in shapes.items()) or "none"
    if variable is not None:
        if variable not in shapes:
            raise InputError(f"{path}: no variable '{variable}' (variables: {listing})")
        if len(shapes[variable]) != 3:
            raise InputError(
                f"{path}: variable '{variable}' is {len(shapes[variable])}-D; "
                "need a 3-D frame stack"
            )
        return variable
    stacks = [k for k, v in shapes.items() if len(v) == 3]
    if not stacks:
        raise InputError(f"{path}: no 3-D frame stack found (variables: {listing})")
    if len(stacks) > 1:
        raise InputError(
            f"{path}: several 3-D variables ({', '.join(stacks)}); choose one with variable=NAME"
        )
    return stacks[0]


def detect_frame_axis(path: Path, shape: tuple[int, int, int], frame_axis: int | None) -> int:
    """Apply the module's frame-axis rule (MATLAB axis order)."""
    if frame_axis is not None:
        if frame_axis not in (0, 1, 2):
            raise InputError(f"frame_axis must be 0, 1 or 2, got {frame_axis}")
        return frame_axis
    a, b, c = shape
    if b == c != a:
        return 0
    if not a == b == c:
        return 2
    raise InputError(
        f"{path}: cannot tell the frame axis of a {a}x{b}x{c} stack; set frame_axis=0, 1 or 2"
    )


def _finish(
    path: Path,
    variable: str,
    version: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    frame_axis: int | None,
    read_matlab: Callable[[int, int, int], np.ndarray],
) -> MatStack:
    shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
    check_dtype(dtype, f"{path}:{variable}")
    axis = detect_frame_axis(path, shape3, frame_axis)
    if shape3[axis] == 0:
        raise InputError(f"{path}: variable '{variable}' holds 0 frames")

    def read(start: int, stop: int) -> np.ndarray:
        return read_matlab(axis, start, stop)

    return MatStack(path, variable, version, shape3, axis, dtype, read)


def _open_v5(path: Path, variable: str | None, frame_axis: int | None) -> MatStack:
    import scipy.io

    try:
        listing = scipy.io.whosmat(str(path))
    except Exception as exc:  # scipy raises many types for corrupt files
        raise InputError(f"{path}: corrupt or truncated .mat file ({_reason(exc)})") from None
    shapes = {name: tuple(shape) for name, shape, _cls in listing}
    name = choose_variable(path, shapes, variable)
    try:
        data = scipy.io.loadmat(str(path), variable_names=[name], mat_dtype=False)[name]
    except Exception as exc:
        raise InputError(f"{path}: corrupt or truncated .mat file ({_reason(exc)})") from None
    if not isinstance(data, np.ndarray) or data.ndim != 3:
        raise InputError(f"{path}: variable '{name}' is not a numeric 3-D array")

    def read_matlab(axis: int, start: int, stop: int) -> np.ndarray:
        moved = np.moveaxis(data, axis, 0)
        return np.ascontiguousarray(moved[start:stop])

    return _finish(path, name, "v5", data.shape, data.dtype, frame_axis, read_matlab)


def _open_v73(path: Path, variable: str | None, frame_axis: int | None) -> MatStack:
    try:
        with h5py.File(path, "r") as f:
            datasets = {
                k: f[k] for k in f if not k.startswith("#") and isinstance(f[k], h5py.Dataset)
            }
            shapes = {k: tuple(reversed(d.shape)) for k, d in datasets.items()}
            name = choose_variable(path, shapes, variable)
            dtype = datasets[name].dtype
    except InputError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/RuntimeError on damage
        raise InputError(f"{path}: corrupt or truncated .mat file ({_reason(exc)})") from None

    def read_matlab(axis: int, start: int, stop: int) -> np.ndarray:
        # h5py axis for MATLAB axis a is 2 - a; slice frames there, then reorder to (n, r, c).
        rows, cols = (a for a in range(3) if a != axis)
        index: list[slice] = [slice(None)] * 3
        index[2 - axis] = slice(start, stop)
        try:
            with h5py.File(path, "r") as f:
                block = f[name][tuple(index)]
        except Exception as exc:
            raise InputError(
                f"{path}: cannot read frames {start}-{stop} ({_reason(exc)})"
            ) from None
        return np.ascontiguousarray(np.transpose(block, (2 - axis, 2 - rows, 2 - cols)))

    return _finish(path, name, "v7.3", shapes[name], dtype, frame_axis, read_matlab)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
