"""A lower bound on a trial's peak memory, from its config alone (no torch), for the check before launch.

Only what a trial surely holds at once is counted, so the estimate errs low and a refusal means the trial
cannot fit:
- the process itself (Python with torch imported: 222 MiB measured; PROCESS_BYTES is less);
- the evaluation's pairwise distances: the energy distance of every torus and plane target builds the
  (n, n) squared distances of the n_eval evaluation samples against themselves one coordinate at a time
  (`core.geometry.sq_distance`): the sum so far and the next coordinate's square, two (n, n) tensors at once;
- with stop_gradient off, the dense operator (`core/dense.py`) keeps, for the backward pass, at least two
  (N, M, D) tensors per side (samples against data and against negatives), at one periodic image.
Left out: the streaming operators' blocks (`core/streaming.py`: CPU_BLOCK_ELEMS per scratch buffer, 1 MiB in
float32; on a GPU a quarter of its free memory), the spectral grids, Sinkhorn's cached log-kernel (at most
64 MiB), model weights, the periodic images of the dense path and the extra bandwidth scales.
Measured peaks against this bound: tests/test_memory_check.py.
"""

from __future__ import annotations

from typing import Any

from .metrics import sources_for
from .torus import TORUS_DIMS

PROCESS_BYTES = 200 << 20  # Python + torch + the package, before any tensor (222 MiB measured on CPU)
ITEMSIZE = 4  # samples, data and their pairwise tensors are float32
PLANE_DIMS = {"checkerboard": 2, "gaussian_grid": 2, "swiss_roll": 2, "bimodal_between": 2, "bimodal_far": 2,
              "bimodal_collapsed": 2, "eight_gaussians": 2, "moons": 2}  # 2-D toy targets
DENSE_PAIR_OPERATORS = ("meanshift", "deng", "score", "mmd", "sinkhorn")  # dense: the full (N, M) kernel


def target_dim(cfg: Any) -> int:
    """The dimension of the trial's samples where the config alone tells it; 1 (a lower bound) otherwise."""
    if cfg.target in TORUS_DIMS:
        return TORUS_DIMS[cfg.target]
    if cfg.target == "mixture":
        return int(cfg.dim)
    return PLANE_DIMS.get(cfg.target, 1)  # file, digits: known only from the data


def peak_parts(cfg: Any) -> dict[str, int]:
    """The counted parts of a trial's peak memory in bytes: process, evaluation, dense_field (0 if absent)."""
    dim, periodic = target_dim(cfg), cfg.target in TORUS_DIMS
    evaluation = 0
    sources = sources_for(cfg.metrics, cfg.converge_on)
    if (periodic and "spectrum" in sources) or (not periodic and cfg.target != "digits" and "plane" in sources):
        evaluation = 2 * cfg.n_eval * cfg.n_eval * ITEMSIZE
    dense = 0
    if not cfg.stop_gradient and cfg.operator in DENSE_PAIR_OPERATORS:
        negatives = cfg.n_neg or cfg.n_samples
        dense = 2 * cfg.n_samples * (cfg.n_data + negatives) * dim * ITEMSIZE
    return {"process": PROCESS_BYTES, "evaluation": evaluation, "dense_field": dense}


def peak_bytes(cfg: Any) -> int:
    """A lower bound on the trial's peak memory (bytes): the process plus its largest counted phase."""
    parts = peak_parts(cfg)
    return parts["process"] + max(parts["evaluation"], parts["dense_field"])


def gib(n: float) -> str:
    """Bytes as GiB with two digits (MiB below 1 GiB)."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
