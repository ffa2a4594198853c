"""What a sweep's trials will read, checked before Ray starts: the target files of `target: file`.

Each distinct `target_path` must exist, be readable, and hold a numeric (N, D) array (a 1-D array is
(N, 1)) with N >= 2 and finite values: a `.npy` array or the numeric columns of a Parquet file, as
`core.targets.load_array` reads them in the trials.  numpy and pyarrow only (no torch).
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Iterator

from ..spaces import VARIANT_PARAM, SearchSpace, SpaceError

_TARGET_KEYS = ("target", "target_path")
_CHUNK_ROWS = 1 << 16  # rows checked for finite values at a time (a memory-mapped .npy is never loaded whole)


def target_files(space: SearchSpace) -> set[str]:
    """Every `target_path` a trial of the space uses with `target: file`."""
    swept = [a for a in space.axes if a.key in _TARGET_KEYS]
    first = {a.key: a.corners()[0] for a in space.axes if a.key not in _TARGET_KEYS}
    variants = [v.name for v in space.variants] or [None]
    paths: set[str] = set()
    for combo in itertools.product(*[a.corners() for a in swept]):
        for variant in variants:
            params = {**first, **{a.key: v for a, v in zip(swept, combo)}}
            if variant is not None:
                params[VARIANT_PARAM] = variant
            cfg = space.resolve(params, where="")
            if cfg.target == "file" and cfg.target_path:
                paths.add(cfg.target_path)
    return paths


def check_target_files(space: SearchSpace) -> None:
    """SpaceError naming the file and the problem, for the first target file a trial could not use."""
    for path in sorted(target_files(space)):
        problem = target_file_problem(path)
        if problem:
            raise SpaceError(f"{space.source}: target_path {path!r}: {problem}")


def target_file_problem(path: str) -> str:
    """'' for a usable target file, else what is wrong with it."""
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "a folder, not a .npy or .parquet file"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    suffix = os.path.splitext(path)[1]
    if suffix not in (".npy", ".parquet", ".pq"):
        return f"expected a .npy or .parquet file, got {suffix or 'no suffix'}"
    try:
        shape, chunks = _npy(path) if suffix == ".npy" else _parquet(path)
        if len(shape) not in (1, 2) or shape[0] < 2 or (len(shape) == 2 and shape[1] < 1):
            return f"expected an (N, D) array with N >= 2, got shape {tuple(shape)}"
        for chunk in chunks:
            if not _finite(chunk):
                return "contains non-finite values"
    except _Unusable as err:
        return str(err)
    except (OSError, ValueError, EOFError) as err:
        return f"unreadable ({type(err).__name__}: {' '.join(str(err).split())[:160]})"
    return ""


class _Unusable(ValueError):
    """A readable file that holds no usable array."""


def _npy(path: str) -> tuple[tuple[int, ...], Iterator[Any]]:
    import numpy as np

    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.dtype.kind not in "biuf":
        raise _Unusable(f"not a numeric array (dtype {arr.dtype})")
    if arr.ndim == 0:
        raise _Unusable("expected an (N, D) array with N >= 2, got a single number")
    rows = arr.reshape(arr.shape[0], -1)
    return arr.shape, (rows[i:i + _CHUNK_ROWS] for i in range(0, len(rows), _CHUNK_ROWS))


def _parquet(path: str) -> tuple[tuple[int, ...], Iterator[Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cols = [c for c, t in zip(table.column_names, table.schema.types) if str(t).startswith(("float", "double", "int"))]
    if not cols:
        raise _Unusable("no numeric columns")
    return (table.num_rows, len(cols)), (table[c].to_numpy(zero_copy_only=False) for c in cols)


def _finite(values: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).all())
