"""Plain ``.npy`` vector files: memory-mapped, never unpickled, every problem named.

:func:`load_npy` opens a 2-D numeric ``.npy`` array read-only with ``mmap_mode="r"`` and
``allow_pickle=False``. Anything else is an :class:`~echoseek.errors.InputError` that says what
the file is instead: not an NPY file at all (a Python pickle is recognised, and never loaded),
a damaged one, or an array of Python objects, which is what ``np.save`` writes for ragged rows;
then the first row whose length differs is named by its index. That row is found without
running the pickle: :class:`_StubUnpickler` rebuilds only numpy's array and dtype constructors,
as inert stand-ins that record their arguments, and refuses every other global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from echoseek.errors import InputError

NPY_MAGIC = b"\x93NUMPY"
MAX_INSPECT_BYTES = 256 << 20  # object arrays larger than this are refused without a row index
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def load_npy(path: Path) -> np.ndarray:
    """Memory-map a 2-D numeric ``.npy`` array; anything else raises InputError naming it."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: {_problem(path, exc)}") from None
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise InputError(f"{path}: expected a 2-D numeric array, got {arr.dtype} {arr.shape}")
    return arr


def _problem(path: Path, exc: Exception) -> str:
    """Why ``np.load`` refused the file, in echoseek's words (never numpy's pickle advice)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(NPY_MAGIC))
            if head != NPY_MAGIC:
                kind = "a Python pickle, which is never loaded" if head[:1] == b"\x80" else ""
                return f"not a .npy array file ({kind or 'no NPY header'})"
            fh.seek(0)
            shape, dtype = _header(fh)
            if dtype.hasobject:
                return _object_problem(fh, shape)
    except (OSError, ValueError):
        pass
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "pickle" in text:
        text = "holds pickled Python objects"
    return f"not a readable .npy array ({text})"


def _header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(shape), np.dtype(dtype)


def _object_problem(fh: Any, shape: tuple[int, ...]) -> str:
    what = f"an array of Python objects of shape {shape}; expected a 2-D numeric array"
    data = fh.read(MAX_INSPECT_BYTES + 1)
    if len(data) > MAX_INSPECT_BYTES or len(shape) != 1:
        return what
    try:
        rows = _object_rows(data)
    except Exception:  # a damaged or hostile pickle: only the stub globals ever run
        return what
    lengths = [_length(row) for row in rows]
    for i, n in enumerate(lengths):
        if n is None:
            return f"row {i} is not a 1-D sequence of numbers ({what})"
        if n != lengths[0]:
            return f"row {i} has {n} values but row 0 has {lengths[0]} (ragged rows: {what})"
    return what


def _object_rows(data: bytes) -> list[Any]:
    """The elements of a pickled 1-D object ndarray, as stubs (nothing of numpy runs)."""
    outer = _StubUnpickler(io.BytesIO(data)).load()
    state = outer.state if isinstance(outer, _Stub) else None
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[4], list)):
        raise ValueError("not a pickled object array")
    return state[4]


def _length(row: Any) -> int | None:
    if isinstance(row, (list, tuple)):
        return len(row)
    if isinstance(row, _Stub) and isinstance(row.state, tuple) and len(row.state) >= 2:
        shape = row.state[1]
        if isinstance(shape, tuple) and len(shape) == 1 and isinstance(shape[0], int):
            return shape[0]
    return None


class _Stub:
    """Stands in for a numpy array, dtype or scalar: records its arguments and state."""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StubUnpickler(pickle.Unpickler):
    """Resolves numpy's array constructors to :class:`_Stub` and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return _Stub
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
