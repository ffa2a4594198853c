"""`FieldSpec`: everything a drift operator needs besides the samples."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable

import torch

from .geometry import PERIODIC_TOL, periodic_shells
from .kernels import KERNELS, Kernel, resolve
from ..spine.config import NORMALIZATIONS
from ..spine.theory import DEFAULT_SHAPE

log = logging.getLogger(__name__)

# How an operator is evaluated: "stream" visits the N x M kernel matrix one block at a time;
# "spectral" sums the periodic kernel through its Fourier series (torus, meanshift/score/mmd);
# "auto" (what trials use) picks the cheaper exact one of the two per call (spectral.plan_for);
# "dense" builds the whole matrix (the reference, for tests and the benchmark).
BACKENDS = ("auto", "stream", "spectral", "dense")
# normalisations the spectral backend implements (meanshift's own); "auto" with any other streams
SPECTRAL_NORMALIZATIONS = ("auto", "per_side")


@dataclass(frozen=True)
class FieldSpec:
    """Everything an operator needs besides the samples."""

    kernel: str = "gaussian"
    bandwidth: float = 1.0
    periodic: bool = False
    neg_is_x: bool = True  # negatives are the evaluation points: mask self-pairs
    bandwidth_scales: tuple[float, ...] = (1.0,)  # deng: bandwidths = bandwidth * scales, fields summed
    drift_norm: bool = False  # deng: divide each bandwidth's field by its RMS over the batch
    sinkhorn_iters: int = 50  # at most; fewer once the potentials move by <= sinkhorn_tol (0: always all)
    images: int = -1  # torus: image shells beyond the minimum image (-1: enough for geometry.PERIODIC_TOL)
    backend: str = "auto"  # one of BACKENDS; gradients through V always use "dense"
    block_x: int = 0  # stream: evaluation points per block (0: chosen from free memory)
    block_y: int = 0  # stream: samples per block (0: chosen from free memory)
    kernel_shape: float = DEFAULT_SHAPE  # kernel families (rational_quadratic): the shape alpha
    normalization: str = "auto"  # meanshift, deng: one of spine.config.NORMALIZATIONS (auto: the operator's own)
    landmarks: int = 0  # nystrom: landmark count m (0, or m >= the data batch: the exact field)
    nystrom_repulsion: bool = False  # nystrom: approximate the repulsion too (default: the attraction only)
    sinkhorn_tol: float = 1e-6  # sinkhorn: stop once no potential moves more than this (units of eps)

    @classmethod
    def of(cls, cfg, bandwidth: float, periodic: bool, neg_is_x: bool = True) -> "FieldSpec":
        """The field of a trial config (spine.config.TrialConfig) at one bandwidth."""
        return cls(cfg.kernel, bandwidth, periodic, neg_is_x, cfg.bandwidth_scales, cfg.drift_norm, cfg.sinkhorn_iters,
                   kernel_shape=cfg.kernel_shape, normalization=cfg.normalization, landmarks=cfg.landmarks,
                   sinkhorn_tol=cfg.sinkhorn_tol)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"FieldSpec.backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.block_x < 0 or self.block_y < 0:
            raise ValueError(f"FieldSpec.block_x/block_y must be >= 0, got {self.block_x}, {self.block_y}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"FieldSpec.normalization {self.normalization!r}; allowed: {', '.join(NORMALIZATIONS)}")
        if self.landmarks < 0:
            raise ValueError(f"FieldSpec.landmarks must be >= 0, got {self.landmarks}")
        if self.normalization not in SPECTRAL_NORMALIZATIONS:
            # the spectral backend sums the per-side normalisation only: "auto" streams these
            # (operators.py reads `backend`; the choice is made once, here)
            if self.backend == "spectral":
                raise ValueError(f"backend 'spectral' implements the per-side normalisation only, not "
                                 f"{self.normalization!r}")
            if self.backend == "auto":
                object.__setattr__(self, "backend", "stream")

    def normalisation_or(self, own: str) -> str:
        """The normalisation in force: `normalization`, or `own` (the operator's) when it is "auto"."""
        return own if self.normalization == "auto" else self.normalization

    @property
    def kernel_entry(self) -> Kernel:
        """The kernel, at `kernel_shape` when it is a family (kernels.resolve)."""
        return resolve(self.kernel, self.kernel_shape)

    def shells(self, bandwidth: float, dim: int, quiet: bool = False) -> int:
        """Image shells to sum on the torus for this kernel and bandwidth (0 on the plane); quiet: the count
        alone, without the warning or the sharp kernel's error (`shells_for`), for pricing."""
        if not self.periodic:
            return 0
        if self.images >= 0:
            return self.images
        shells = shells_for(self.kernel, float(bandwidth), dim, float(self.kernel_shape), quiet=quiet)
        if self.normalization == "sharp":  # its denominator sums the sharp kernel, whose tail is heavier
            shells = max(shells, shells_for(self.kernel, float(bandwidth), dim, float(self.kernel_shape), True,
                                            quiet))
        return shells


_WARNED: set[tuple[str, int]] = set()  # (kernel, dim) already reported
SHARP_TAIL_MAX = 1e-3  # sharp normalisation on the torus: largest image tail of k# accepted (of k#(0))


@functools.lru_cache(maxsize=1024)
def _shells_and_tail(kernel: str, bandwidth: float, dim: int, shape: float, sharp: bool) -> tuple[int, float]:
    entry = resolve(kernel, shape)
    if entry.mass is not None:
        entry.mass(dim)  # raises for a kernel not integrable in dim dimensions: its image sum diverges
    entry = entry.sharp_kernel() if sharp else entry
    return periodic_shells(lambda d: entry.log(d, bandwidth, dim), dim)


def shells_for(kernel: str, bandwidth: float, dim: int, shape: float = DEFAULT_SHAPE, sharp: bool = False,
               quiet: bool = False) -> int:
    """Image shells that make the periodic kernel (or its sharp kernel) exact to PERIODIC_TOL of
    k(0); when the image budget cannot reach it (heavy tails at wide h) a warning says what tail
    is left (not when quiet)."""
    shells, tail = _shells_and_tail(kernel, bandwidth, dim, shape, sharp)
    if quiet:
        return shells
    if sharp and tail > SHARP_TAIL_MAX:
        raise ValueError(f"normalization 'sharp' on the {dim}-D torus: the sharp kernel of {kernel!r} at h = {bandwidth} "
                         f"leaves a tail of {tail:.1e} of k#(0) beyond {shells} image shells (its periodisation "
                         "diverges or nearly so: k# ~ r^-(dim-1) for the Cauchy kernel, r^(2-2 alpha) for the rational "
                         "quadratic); use the plane or a lighter-tailed kernel")
    if tail > PERIODIC_TOL and (kernel + "#" * sharp, dim) not in _WARNED:
        _WARNED.add((kernel + "#" * sharp, dim))
        spectral_hint = "" if sharp or KERNELS.get(kernel).mass is None else \
            "; the spectral backend (meanshift, score, mmd) sums it exactly"
        log.warning("periodic %s kernel at h = %g in %d-D: %d image shells leave a tail of %.1e of k(0) "
                    "(tolerance %.0e; reported once per kernel and dim)%s",
                    kernel + " (sharp)" * sharp, bandwidth, dim, shells, tail, PERIODIC_TOL, spectral_hint)
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
