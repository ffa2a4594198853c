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


# (dim, a, the strip layouts priced (None: all), what must be chosen: fine, or "wrap")
LAYOUTS = [(1, 0.05, None, 0), (1, 1.6, None, 0), (2, 0.3, (1,), 1), (2, 0.3, (4,), 4), (2, 0.15, (8,), 8),
           (2, 1.4, (2,), 2), (2, 1.4, (0,), "wrap"), (2, 1.6, (4,), 4), (2, 1.8, (1,), "wrap"), (3, 0.5, (1,), 1),
           (3, 0.5, (3,), 3)]


@pytest.mark.parametrize("kernel", sorted(near.COMPILED_KERNELS))
@pytest.mark.parametrize("dim,a,choices,chosen", LAYOUTS,
                         ids=["1d", "1d-wide", "2d-fine1", "2d-fine4", "2d-fine8", "2d-wide-fine2", "2d-wrap",
                              "2d-wider-fine4", "2d-wrap-fallback", "3d-fine1", "3d-fine3"])
def test_compiled_near_field_matches_torch(kernel: str, dim: int, a: float, choices, chosen,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kernel with a compiled form, moment and gradient sums, with and without the self pair, on every
    strip layout: 1-D (x +- r_c wrapping around), blocks of 3-17 strips per axis (the 5-strip block the whole
    torus), one strip with every pair's minimum image (asked for, and where no block fits), 3-D."""
    if choices is not None:
        monkeypatch.setattr(near, "FINE_CHOICES", choices)
    near.strip_layout.cache_clear()
    try:
        x, y = _points(dim, 120, 130, seed=dim)
        for moment in (True, False):
            for self_pairs in (False, True):
                yy = x if self_pairs else y
                lay = near.strip_layout(near.CUTOFF * a, yy.shape[0], dim)
                assert ("wrap" if lay.wrap else lay.fine) == chosen
                s_ref, g_ref = near.near_sums_torch(x, yy, kernel, 0.3, a, moment, self_pairs)
                s, g = near.near_sums(x, yy, kernel, 0.3, a, moment, self_pairs, compiled=True)
                assert float(s_ref.abs().max()) > 0
                torch.testing.assert_close(s, s_ref, rtol=1e-12, atol=1e-13 * float(s_ref.abs().max()))
                torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12 * float(g_ref.abs().max()))
    finally:
        near.strip_layout.cache_clear()


def test_strip_layout_reads_the_chords_only() -> None:
    """The expected candidates per point: the disc's area plus the strips' rounding, falling towards pi r_c^2
    as the strips narrow, always below the 5 x 5 block of cells of side r_c / 2 (6.25 r_c^2); measured
    against what the loop reads (the candidates of 2000 points counted from the sorted samples)."""
    r_c, m = 0.3, 200_000
    density = m / (2 * math.pi) ** 2
    areas = {}
    for fine in (1, 2, 4, 8):
        strips = int(2 * math.pi * fine / r_c)
        side = 2 * math.pi / strips
        volume, _ = near.strip_volume(2, fine, r_c / side)
        areas[fine] = volume * side**2 / r_c**2
    assert 6.25 > areas[1] > areas[2] > areas[4] > areas[8] > math.pi
    assert areas[4] == pytest.approx(3.64, abs=0.05)
    lay = near.strip_layout(r_c, m, 2)
    assert lay.fine >= 3 and lay.candidates == pytest.approx(
        near.strip_volume(2, lay.fine, r_c / lay.side)[0] * lay.side**2 * density, rel=1e-9)
    x, y = _points(2, 2000, m, seed=3)
    grid = near.StripList(y, r_c)
    assert grid.layout == lay
    counted = 0
    for p in x.tolist():
        home = min(int(p[1] / lay.side), lay.strips - 1)
        for off in range(-lay.fine, lay.fine + 1):
            c = home + off
            gap = max(c * lay.side - p[1], p[1] - (c + 1) * lay.side, 0.0)
            if gap >= r_c:
                continue
            w = math.sqrt(r_c * r_c - gap * gap)
            ys = grid.ys[grid.starts[c % lay.strips]:grid.starts[c % lay.strips] + grid.counts[c % lay.strips], 0]
            d = (ys - p[0] + math.pi) % (2 * math.pi) - math.pi
            counted += int((d.abs() < w).sum())
    assert counted / 2000 == pytest.approx(lay.candidates, rel=0.03)


def test_strip_volume_table_is_the_direct_estimate() -> None:
    """strip_volume interpolates a table over (fine - 1/2, fine], where strip_layout's rho lies: within 0.5% of the
    direct estimate's volume there and 0.4 of its strips read (a step function of rho on the estimate's 16-point
    grid; a strip read is priced at ROW_PAIRS candidates), 2-D and 3-D, the direct estimate itself
    elsewhere, and every layout strip_layout prices has its rho in the table."""
    for dim in (2, 3):
        for fine in (1, 2, 4, 8, 16):
            for j in range(41):
                rho = fine - 0.5 + 0.5 * (j + 0.3) / 41
                est = near.strip_volume(dim, fine, rho)
                direct = [float(v[0]) for v in near._strip_volumes(dim, fine, (rho,))]
                assert est[0] == pytest.approx(direct[0], rel=5e-3), (dim, fine, rho)  # candidates
                assert est[1] == pytest.approx(direct[1], abs=0.4), (dim, fine, rho)  # strips read: steps of 1/16+
        assert near.strip_volume(dim, 2, 2.7) == tuple(float(v[0]) for v in near._strip_volumes(dim, 2, (2.7,)))
    for r_c in (0.05, 0.3, 1.0, 2.0, math.pi):
        for fine in near.FINE_CHOICES[1:]:
            strips = int(2 * math.pi * fine / r_c)
            if strips >= 2 * fine + 1:
                assert fine - 0.5 <= r_c * strips / (2 * math.pi) <= fine


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
