"""The conservativeness measure: round-off for gradient fields, clearly non-zero for the per-side Laplacian."""

from __future__ import annotations

import pytest
import torch

from drift_sweeps.core.conservative import asymmetry, coupled, jacobians
from drift_sweeps.core.field import FieldSpec

KERNELS_WITH_SHARP = ["gaussian", "laplacian", "cauchy", "matern32", "matern52", "rational_quadratic"]


def _batch(dim: int = 2, seed: int = 0, n: int = 40, m: int = 60):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    pos = 0.7 * torch.randn(m, dim, generator=g, dtype=torch.float64) + torch.tensor([0.8] + [0.0] * (dim - 1),
                                                                                    dtype=torch.float64)
    return x, pos


@pytest.mark.parametrize("dim", [2, 3])
def test_gaussian_meanshift_is_conservative(dim: int) -> None:
    x, pos = _batch(dim)
    value = asymmetry(x, pos, x, "meanshift", FieldSpec("gaussian", 0.8))
    print(f"Gaussian mean-shift, {dim}-D: asymmetry {value:.1e}")
    assert value < 1e-12


@pytest.mark.parametrize("kernel", KERNELS_WITH_SHARP)
def test_every_kernel_is_conservative_under_sharp_normalisation(kernel: str) -> None:
    x, pos = _batch()
    value = asymmetry(x, pos, x, "meanshift", FieldSpec(kernel, 0.8, normalization="sharp"))
    print(f"{kernel} sharp: asymmetry {value:.1e}")
    assert value < 1e-12


@pytest.mark.parametrize("kernel", ["laplacian", "matern32", "rational_quadratic"])
def test_score_and_mmd_are_conservative(kernel: str) -> None:
    x, pos = _batch(seed=1)
    for operator in ("score", "mmd"):
        assert asymmetry(x, pos, x, operator, FieldSpec(kernel, 0.8)) < 1e-12


def test_per_side_laplacian_is_not_conservative() -> None:
    x, pos = _batch()
    values = {k: asymmetry(x, pos, x, "meanshift", FieldSpec(k, 0.8)) for k in ("laplacian", "cauchy", "matern32")}
    for k, v in values.items():
        print(f"{k} per-side mean-shift (h = 0.8, 40 points, 60 data): asymmetry {v:.3f}")
    assert values["laplacian"] > 1e-2
    assert min(values.values()) > 1e-3


def test_jacobian_matches_finite_differences_and_coupled_operators() -> None:
    x, pos = _batch(n=12, m=20)
    field = FieldSpec("laplacian", 0.8)
    jac = jacobians(x, pos, x, "meanshift", field)
    # the batched (one pass per coordinate) and the per-point (coupled) paths agree where both apply
    per_point = jacobians(x, pos, x, "deng", FieldSpec("laplacian", 0.8, normalization="per_side"))
    assert not coupled("deng", FieldSpec("laplacian", 0.8, normalization="per_side"))
    assert torch.allclose(jac, per_point, atol=1e-12)
    assert coupled("deng", field) and coupled("meanshift", FieldSpec(normalization="joint"))
    from drift_sweeps.core.operators import drift

    eps = 1e-6
    for i in (0, 5):
        for b in range(2):
            step = torch.zeros_like(x)
            step[i, b] = eps
            fd = (drift("meanshift", x + step, pos, x, field)[i] - drift("meanshift", x - step, pos, x, field)[i]) / (
                2 * eps)
            assert torch.allclose(jac[i, :, b], fd, atol=1e-6)
    value = asymmetry(x, pos, x, "deng", field)  # the joint softmax: point by point
    print(f"Laplacian deng (joint): asymmetry {value:.3f}")
    assert value > 1e-3
    with pytest.raises(ValueError, match="dim >= 2"):
        asymmetry(x[:, :1], pos[:, :1], x[:, :1], "meanshift", field)
