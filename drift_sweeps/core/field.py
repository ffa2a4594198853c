"""`FieldSpec`: everything a drift operator needs besides the samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .geometry import periodic_shells
from .kernels import log_kernel

# How an operator is evaluated: "stream" visits the N x M kernel matrix one block at a time
# (the path trials use); "dense" builds it whole (the reference, for tests and the benchmark).
BACKENDS = ("stream", "dense")


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
    images: int = -1  # torus: periodic image shells beyond the minimum image (-1: chosen from h)
    backend: str = "stream"  # one of BACKENDS; gradients through V always use "dense"
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
        return periodic_shells(lambda d: float(log_kernel(self.kernel, torch.tensor(d), bandwidth, dim)))


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
