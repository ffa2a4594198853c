"""The target file of `target: file`: what makes one usable, written once.

A `.npy` array or the numeric columns of a Parquet file, read as an (N, D) float32 array (a 1-D array is
(N, 1)) with N >= 2, D >= 1 and values finite in float32, the dtype the trials use.  The sweep runner
checks every target file with `target_file_problem` before Ray starts, the trial reads it with
`read_target_file`: one rule, one set of messages.  Torch-free; numpy and pyarrow are imported only when
a file is read (a memory-mapped .npy is checked in chunks, never loaded whole).
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional

SUFFIXES = (".npy", ".parquet", ".pq")
NO_SUCH_FILE = "no such file"
_NUMERIC_TYPES = ("float", "double", "int")  # Parquet column types read as coordinates
_CHUNK_ROWS = 1 << 16  # .npy rows checked for finite values at a time


class TargetFileError(ValueError):
    """A target file a trial cannot use; the message says what is wrong, on one line."""


def target_file_problem(path: str) -> str:
    """'' for a usable target file, else what is wrong with it."""
    try:
        _scan(path, keep=False)
    except TargetFileError as err:
        return str(err)
    return ""


def read_target_file(path: str) -> Any:
    """The (N, D) float32 numpy array of a target file; FileNotFoundError or ValueError
    "target_path '<path>': <problem>" for a file `target_file_problem` rejects."""
    try:
        return _scan(path, keep=True)
    except TargetFileError as err:
        kind = FileNotFoundError if str(err) == NO_SUCH_FILE else ValueError
        raise kind(f"target_path {path!r}: {err}") from None


def _path_problem(path: str) -> str:
    if not os.path.exists(path):
        return NO_SUCH_FILE
    if os.path.isdir(path):
        return "a folder, not a .npy or .parquet file"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    suffix = os.path.splitext(path)[1]
    if suffix not in SUFFIXES:
        return f"expected a .npy or .parquet file, got {suffix or 'no suffix'}"
    return ""


def _scan(path: str, keep: bool) -> Optional[Any]:
    """Check the file block by block (TargetFileError at the first problem); with `keep`, the (N, D) array."""
    import numpy as np

    problem = _path_problem(path)
    if problem:
        raise TargetFileError(problem)
    try:
        shape, blocks, axis = _npy(path) if path.endswith(".npy") else _parquet(path)
        if len(shape) not in (1, 2) or shape[0] < 2 or (len(shape) == 2 and shape[1] < 1):
            raise TargetFileError(f"expected an (N, D) array with N >= 2, got shape {tuple(shape)}")
        kept = []
        for block in blocks:
            with np.errstate(over="ignore"):  # beyond float32's range: inf, reported below
                block = np.asarray(block, dtype=np.float32)
            if not np.isfinite(block).all():
                raise TargetFileError("contains non-finite values")
            if keep:
                kept.append(block)
    except TargetFileError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise TargetFileError(f"unreadable ({type(err).__name__}: {' '.join(str(err).split())[:160]})") from None
    return np.concatenate(kept, axis=axis) if keep else None


def _npy(path: str) -> tuple[tuple[int, ...], Iterator[Any], int]:
    """(shape as stored, chunks of rows of the (N, D) view, 0: the chunks stack by rows)."""
    import numpy as np

    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.dtype.kind not in "biuf":
        raise TargetFileError(f"not a numeric array (dtype {arr.dtype})")
    if arr.ndim == 0:
        raise TargetFileError("expected an (N, D) array with N >= 2, got a single number")
    rows = arr.reshape(arr.shape[0], -1)
    return arr.shape, (rows[i:i + _CHUNK_ROWS] for i in range(0, len(rows), _CHUNK_ROWS)), 0


def _parquet(path: str) -> tuple[tuple[int, ...], Iterator[Any], int]:
    """((N, D), the numeric columns as (N, 1) blocks, 1: the blocks stack by columns)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cols = [c for c, t in zip(table.column_names, table.schema.types) if str(t).startswith(_NUMERIC_TYPES)]
    if not cols:
        raise TargetFileError("no numeric columns")
    return (table.num_rows, len(cols)), (table[c].to_numpy(zero_copy_only=False).reshape(-1, 1) for c in cols), 1
