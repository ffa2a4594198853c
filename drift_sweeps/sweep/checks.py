"""What a sweep's trials will read, checked before Ray starts: the target files of `target: file`.

Each distinct `target_path` must pass `core.target_file` (the rule the trials read them by): a `.npy`
array or the numeric columns of a Parquet file, (N, D) with N >= 2 and finite values.  No torch.
"""

from __future__ import annotations

import itertools

from ..core.target_file import target_file_problem
from ..spaces import VARIANT_PARAM, SearchSpace, SpaceError

_TARGET_KEYS = ("target", "target_path")


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

