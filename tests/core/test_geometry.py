"""The image-shell rule of the periodic kernels (`geometry.image_tails`, `periodic_shells`): every shell count's
tail bound from one evaluation, checked against each count's sum taken on its own."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core.geometry import PERIODIC_TOL, image_tails, periodic_shells
from drift_sweeps.core.kernels import KERNELS


def _tail_alone(log_k, dim: int, shells: int, horizon: int) -> float:
    """The bound for one shell count: shells shells + 1 .. horizon, plus the last term times horizon."""
    m = torch.arange(shells + 1, horizon + 1, dtype=torch.float64)
    terms = ((2 * m + 1) ** dim - (2 * m - 1) ** dim) * torch.exp(
        log_k((2 * m - 1) * math.pi) - log_k(torch.zeros(1, dtype=torch.float64)))
    return float(terms.sum() + terms[-1] * horizon) if terms.numel() else 0.0


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "cauchy", "matern52"])
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("h", [0.2, 1.0, 3.0])
def test_every_shell_counts_tail_from_one_evaluation(kernel: str, dim: int, h: float) -> None:
    entry = KERNELS.get(kernel)

    def log_k(d: torch.Tensor) -> torch.Tensor:
        return entry.log(d, h, dim)

    horizon, top = 5000, 8
    tails = image_tails(log_k, dim, top, horizon)
    assert len(tails) == top + 1
    for s, tail in enumerate(tails):
        alone = _tail_alone(log_k, dim, s, horizon)
        assert tail == pytest.approx(alone, rel=1e-12, abs=1e-300), (s, tail, alone)
    assert all(a >= b for a, b in zip(tails, tails[1:]))  # fewer shells leave more out
    shells, tail = periodic_shells(log_k, dim)
    full = image_tails(log_k, dim, shells)
    assert tail == pytest.approx(full[shells], rel=1e-12)
    budget = int((289 ** (1.0 / dim) - 1) // 2)
    if tail <= PERIODIC_TOL:  # the fewest shells that reach the tolerance
        assert shells == 0 or full[shells - 1] > PERIODIC_TOL
    else:  # a heavy tail: the whole image budget
        assert shells == budget
