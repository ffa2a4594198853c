"""`FieldSpec`: everything a drift operator needs besides the samples."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable

import torch

from .geometry import PERIODIC_TOL, periodic_shells
from .kernels import KERNELS

log = logging.getLogger(__name__)

# How an operator is evaluated: "stream" visits the N x M kernel matrix one block at a time;
# "spectral" sums the periodic kernel through its Fourier series (torus, meanshift/score/mmd);
# "auto" (what trials use) picks the cheaper exact one of the two per call (spectral.plan_for);
# "dense" builds the whole matrix (the reference, for tests and the benchmark).
BACKENDS = ("auto", "stream", "spectral", "dense")


@dataclass(frozen=True)
class FieldSpec:
    """Everything an operator needs besides the samples."""

    kernel: str = "gaussian"
    bandwidth: float = 1.0
    periodic: bool = False
    neg_is_x: bool = True  # negatives are the evaluation points: mask self-pairs
    bandwidth_scales: tuple[float, ...] = (1.0,)  # deng: bandwidths = bandwidth * scales, fields summed
    drift_norm: bool = False  # deng: divide each bandwidth's field by its RMS over the batch
    sinkhorn_iters: int = 50
    images: int = -1  # torus: image shells beyond the minimum image (-1: enough for geometry.PERIODIC_TOL)
    backend: str = "auto"  # one of BACKENDS; gradients through V always use "dense"
    block_x: int = 0  # stream: evaluation points per block (0: chosen from free memory)
    block_y: int = 0  # stream: samples per block (0: chosen from free memory)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"FieldSpec.backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.block_x < 0 or self.block_y < 0:
            raise ValueError(f"FieldSpec.block_x/block_y must be >= 0, got {self.block_x}, {self.block_y}")

    def shells(self, bandwidth: float, dim: int) -> int:
        """Image shells to sum on the torus for this kernel and bandwidth (0 on the plane)."""
        if not self.periodic:
            return 0
        if self.images >= 0:
            return self.images
        return shells_for(self.kernel, float(bandwidth), dim)


_WARNED: set[tuple[str, int]] = set()  # (kernel, dim) already reported


@functools.lru_cache(maxsize=1024)
def shells_for(kernel: str, bandwidth: float, dim: int) -> int:
    """Image shells that make the periodic kernel exact to PERIODIC_TOL of k(0); when the image
    budget cannot reach it (heavy tails at wide h) a warning says what tail is left."""
    entry = KERNELS.get(kernel)
    shells, tail = periodic_shells(lambda d: entry.log(d, bandwidth, dim), dim)
    if tail > PERIODIC_TOL and (kernel, dim) not in _WARNED:
        _WARNED.add((kernel, dim))
        log.warning("periodic %s kernel at h = %g in %d-D: %d image shells leave a tail of %.1e of k(0) "
                    "(tolerance %.0e; reported once per kernel and dim); the spectral backend (meanshift, score, "
                    "mmd) sums it exactly",
                    kernel, bandwidth, dim, shells, tail, PERIODIC_TOL)
    return shells


Operator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, FieldSpec], torch.Tensor]


SingleScale = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, FieldSpec, float], torch.Tensor]


def sum_over_scales(single: SingleScale, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                    field: FieldSpec) -> torch.Tensor:
    """Sum of a one-bandwidth field over bandwidth * scale, each divided by its batch RMS if drift_norm."""
    total = torch.zeros_like(x)
    for scale in field.bandwidth_scales:
        v = single(x, pos, neg, field, field.bandwidth * scale)  # (N, D)
        if field.drift_norm:
            v = v / v.square().mean().sqrt().clamp_min(1e-12)
        total = total + v
    return total
