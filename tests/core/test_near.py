"""The compiled Ewald near field (numba) against the torch reference, and against brute force."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core import near
from drift_sweeps.core.kernels import KERNELS

pytestmark = pytest.mark.skipif(not near.compiled_available(), reason="numba not installed")


def _points(dim: int, n: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g, dtype=torch.float64) * 2 * math.pi
    y = torch.rand(m, dim, generator=g, dtype=torch.float64) * 2 * math.pi
    return x, y


@pytest.mark.parametrize("kernel", sorted(near.COMPILED_KERNELS))
@pytest.mark.parametrize("dim,a", [(1, 0.05), (1, 1.4), (1, 1.6), (2, 0.3), (2, 1.4), (2, 1.6)],
                         ids=["1d", "1d-five-cells", "1d-one-cell", "2d", "2d-five-cells", "2d-one-cell"])
def test_compiled_near_field_matches_torch(kernel: str, dim: int, a: float) -> None:
    """Every kernel with a compiled form, moment and gradient sums, with and without the self pair,
    many cells, exactly five (the 5-cell block is the whole torus) and the single-cell case
    (r_c > 4 pi / 5)."""
    edge_layouts = {1.4: (5, 5), 1.6: (1, 1)}  # (cells, span)
    if a in edge_layouts:
        assert near.cell_layout(near.CUTOFF * a) == edge_layouts[a]
    x, y = _points(dim, 120, 130, seed=dim)
    for moment in (True, False):
        for self_pairs in (False, True):
            yy = x if self_pairs else y
            s_ref, g_ref = near.near_sums_torch(x, yy, kernel, 0.3, a, moment, self_pairs)
            s, g = near.near_sums(x, yy, kernel, 0.3, a, moment, self_pairs, compiled=True)
            assert float(s_ref.abs().max()) > 0
            torch.testing.assert_close(s, s_ref, rtol=1e-12, atol=1e-13 * float(s_ref.abs().max()))
            torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12 * float(g_ref.abs().max()))


def test_near_field_against_brute_force() -> None:
    """Both implementations equal the all-pairs sum of k chi over the minimum image within r_c."""
    x, y = _points(2, 50, 60, seed=7)
    h, a = 0.4, 0.35
    d = x[:, None, :] - y[None, :, :]
    d -= 2 * math.pi * torch.round(d / (2 * math.pi))  # (N, M, D): x - y
    r = d.square().sum(-1).sqrt()
    kchi = torch.exp(KERNELS.get("laplacian").log(r, h, 2) - (r / a) ** near.CHI_POWER)
    kchi = torch.where(r < near.CUTOFF * a, kchi, torch.zeros_like(kchi))
    s_ref, g_ref = kchi.sum(1), -(kchi.unsqueeze(-1) * d).sum(1)
    for compiled in (False, True):
        s, g = near.near_sums(x, y, "laplacian", h, a, True, False, compiled=compiled)
        torch.testing.assert_close(s, s_ref, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-14)


def test_kernels_without_a_compiled_form_use_torch() -> None:
    x, y = _points(1, 20, 20, seed=1)
    assert set(near.COMPILED_KERNELS) <= set(KERNELS.names())
    with pytest.raises(ValueError, match="compiled"):
        near.near_sums(x, y, "rational_quadratic", 0.3, 0.2, True, False, compiled=True)
