"""The normalisation key (per_side, joint, none, sharp) against closed forms and against each other, and the
`score` operator against the kernel-gradient drift of arXiv 2605.10727 (closed form, non-Gaussian kernels).

Everything in float64 on small batches; "closed form" means a transcription independent of dense.py and
streaming.py: explicit sums over pairs, gradients by autograd of an explicit log-sum.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from drift_sweeps.core.field import FieldSpec
from drift_sweeps.core.kernels import resolve
from drift_sweeps.core.operators import drift
from drift_sweeps.spine.config import ConfigError, TrialConfig

ALL = ["gaussian", "laplacian", "cauchy", "matern32", "matern52", "rational_quadratic"]
TORUS_OK = ["gaussian", "laplacian", "matern32", "matern52"]  # sharp kernels light enough to periodise
NORMS = ["per_side", "joint", "none", "sharp"]


def _batch(periodic: bool, dim: int, seed: int = 0, n: int = 23, m: int = 31):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g, dtype=torch.float64)
    pos = torch.rand(m, dim, generator=g, dtype=torch.float64)
    if periodic:
        return 2 * math.pi * x, 2 * math.pi * pos
    return 3.0 * x - 1.5, 3.0 * pos - 1.0


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    return float((a - b).abs().max() / b.abs().max())


def _image_disp(x: torch.Tensor, y: torch.Tensor, periodic: bool, shells: int) -> torch.Tensor:
    """y_j - x_i over every periodic image (one image on the plane).  -> (N, M, I, D)."""
    d = y.unsqueeze(0) - x.unsqueeze(1)  # (N, M, D)
    if not periodic:
        return d.unsqueeze(2)
    d = d - 2 * math.pi * torch.round(d / (2 * math.pi))
    rng = torch.arange(-shells, shells + 1, dtype=torch.float64)
    offs = torch.cartesian_prod(*[rng] * x.shape[1]).reshape(-1, x.shape[1]) * 2 * math.pi  # (I, D)
    return d.unsqueeze(2) + offs


def _closed_sharp(x, pos, field: FieldSpec) -> torch.Tensor:
    """h^2 grad_z [log sum_j k#(z - y+_j) - log sum_{j != i} k#(z - x_j)] at z = x_i, by autograd."""
    sharp, h, dim = field.kernel_entry.sharp_kernel(), field.bandwidth, x.shape[1]
    shells = field.shells(h, dim)
    z = x.clone().requires_grad_(True)

    def log_sum(y: torch.Tensor, mask: bool) -> torch.Tensor:
        dist = _image_disp(z, y, field.periodic, shells).square().sum(-1).clamp_min(1e-300).sqrt()  # (N, M, I)
        ks = sharp.log(dist, h, dim).exp().sum(2)  # (N, M)
        if mask:
            ks = ks * (1 - torch.eye(ks.shape[0], dtype=ks.dtype))
        return ks.sum(1).log()

    (g,) = torch.autograd.grad((log_sum(pos, False) - log_sum(x.detach(), True)).sum(), z)
    return h * h * g


@pytest.mark.parametrize("kernel", ALL)
@pytest.mark.parametrize("operator", ["meanshift", "deng"])
def test_sharp_is_the_score_difference_of_sharp_smoothed_densities(kernel: str, operator: str) -> None:
    x, pos = _batch(False, 2)
    worst = 0.0
    for backend in ("dense", "stream"):
        field = FieldSpec(kernel, 0.7, normalization="sharp", backend=backend)
        v = drift(operator, x, pos, x, field)
        err = _rel(v, _closed_sharp(x, pos, field))
        worst = max(worst, err)
    print(f"{operator} {kernel} sharp vs closed form: max error {worst:.1e} of max |V|")
    assert worst < 1e-5


@pytest.mark.parametrize("kernel", TORUS_OK)
def test_sharp_on_the_torus_sums_the_sharp_kernels_images(kernel: str) -> None:
    x, pos = _batch(True, 1)
    for backend in ("dense", "stream"):
        field = FieldSpec(kernel, 1.1, periodic=True, normalization="sharp", backend=backend)
        assert field.shells(1.1, 1) >= 1
        assert _rel(drift("meanshift", x, pos, x, field), _closed_sharp(x, pos, field)) < 1e-5


def test_sharp_equals_score_of_the_sharp_kernel() -> None:
    """The sharp kernel of the Laplacian (h) is the Matern-3/2 shape at length sqrt(3) h, of the Matern 3/2 (h)
    the Matern-5/2 shape at sqrt(5/3) h; score carries h'^2, sharp h^2."""
    x, pos = _batch(False, 2, seed=1)
    h = 0.6
    for kernel, sharp_as, ratio in (("laplacian", "matern32", 3.0), ("matern32", "matern52", 5.0 / 3.0)):
        v = drift("meanshift", x, pos, x, FieldSpec(kernel, h, normalization="sharp", backend="dense"))
        s = drift("score", x, pos, x, FieldSpec(sharp_as, h * math.sqrt(ratio), backend="dense"))
        assert _rel(v, s / ratio) < 1e-12


def test_gaussian_sharp_is_per_side() -> None:
    x, pos = _batch(False, 2)
    field = FieldSpec("gaussian", 0.5, backend="dense")
    assert _rel(drift("meanshift", x, pos, x, dataclasses.replace(field, normalization="sharp")),
                drift("meanshift", x, pos, x, field)) < 1e-12


def _per_side_closed(x, pos, field: FieldSpec) -> torch.Tensor:
    k = field.kernel_entry
    def side(y, mask):
        logits = k.log(torch.cdist(x, y), field.bandwidth, x.shape[1])
        if mask:
            logits = logits.masked_fill(torch.eye(len(x), dtype=torch.bool), -torch.inf)
        return torch.softmax(logits, 1) @ y - x
    return side(pos, False) - side(x, True)


@pytest.mark.parametrize("backend", ["dense", "stream"])
def test_auto_keeps_each_operators_own_normalisation(backend: str) -> None:
    x, pos = _batch(False, 2)
    for kernel in ALL:
        field = FieldSpec(kernel, 0.6, backend=backend)
        ms = drift("meanshift", x, pos, x, field)
        assert _rel(ms, _per_side_closed(x, pos, field)) < 1e-12
        assert torch.equal(ms, drift("meanshift", x, pos, x, dataclasses.replace(field, normalization="per_side")))
        dg = drift("deng", x, pos, x, field)
        assert torch.equal(dg, drift("deng", x, pos, x, dataclasses.replace(field, normalization="joint")))
        # one bandwidth: meanshift with the joint softmax is deng, deng with the per-side one is mean-shift
        assert _rel(drift("meanshift", x, pos, x, dataclasses.replace(field, normalization="joint")), dg) < 1e-12
        assert _rel(drift("deng", x, pos, x, dataclasses.replace(field, normalization="per_side")), ms) < 1e-12


@pytest.mark.parametrize("backend", ["dense", "stream"])
def test_none_is_the_raw_kernel_weighted_displacement(backend: str) -> None:
    x, pos = _batch(False, 2)
    for kernel in ALL:
        field = FieldSpec(kernel, 0.6, normalization="none", backend=backend)
        k = field.kernel_entry
        w_pos = k.log(torch.cdist(x, pos), 0.6, 2).exp()  # (N, M)
        w_neg = k.log(torch.cdist(x, x), 0.6, 2).exp() * (1 - torch.eye(len(x), dtype=x.dtype))  # (N, N)
        closed = (w_pos @ pos - w_pos.sum(1, keepdim=True) * x) / len(pos) \
            - (w_neg @ x - w_neg.sum(1, keepdim=True) * x) / (len(x) - 1)
        assert _rel(drift("meanshift", x, pos, x, field), closed) < 1e-12


@pytest.mark.parametrize("norm", NORMS)
def test_stream_equals_dense_for_every_normalisation(norm: str) -> None:
    for periodic, dim, kernels in ((False, 2, ALL), (True, 1, TORUS_OK), (True, 2, ["laplacian", "matern52"])):
        x, pos = _batch(periodic, dim, n=19, m=17)
        neg = _batch(periodic, dim, seed=4, n=13)[0]
        for kernel in kernels:
            for operator in ("meanshift", "deng"):
                for neg_is_x, negs in ((True, x), (False, neg))[: 1 if periodic else 2]:
                    field = FieldSpec(kernel, 0.9, periodic, neg_is_x, normalization=norm, backend="stream",
                                      bandwidth_scales=(0.5, 1.0), drift_norm=True, block_x=5, block_y=7)
                    v_stream = drift(operator, x, pos, negs, field)
                    v_dense = drift(operator, x, pos, negs, dataclasses.replace(field, backend="dense"))
                    assert _rel(v_stream, v_dense) < 1e-9, (periodic, dim, kernel, operator, neg_is_x)


def test_backends_and_config_rules() -> None:
    assert FieldSpec("laplacian", 0.5, True, normalization="sharp").backend == "stream"  # auto: spectral can't
    assert FieldSpec("laplacian", 0.5, True, normalization="per_side").backend == "auto"
    with pytest.raises(ValueError, match="per-side"):
        FieldSpec("laplacian", 0.5, True, normalization="joint", backend="spectral")
    with pytest.raises(ValueError, match="normalization"):
        FieldSpec(normalization="softmax")
    line, _ = _batch(False, 1)
    with pytest.raises(ValueError, match="Cauchy"):  # 1-D: int r k(r) dr diverges
        drift("meanshift", line, line, line, FieldSpec("cauchy", 0.5, normalization="sharp"))
    with pytest.raises(ValueError, match="periodisation"):
        FieldSpec("cauchy", 0.5, True, normalization="sharp").shells(0.5, 2)
    for raw, key in (({"operator": "score", "normalization": "sharp"}, "normalization"),
                     ({"kernel": "cauchy", "target": "torus2d", "normalization": "sharp"}, "normalization"),
                     ({"kernel": "rational_quadratic", "kernel_shape": 1.0, "target": "moons",
                       "normalization": "sharp"}, "normalization"),
                     ({"kernel": "rational_quadratic", "kernel_shape": 1.9, "target": "torus2d",
                       "normalization": "sharp"}, "normalization")):
        with pytest.raises(ConfigError) as err:
            TrialConfig.from_dict(raw)
        assert err.value.key == key
    assert TrialConfig.from_dict({"operator": "deng", "normalization": "none"}).normalization == "none"
    assert TrialConfig.from_dict({"kernel": "laplacian", "target": "torus2d", "normalization": "sharp"})


@pytest.mark.parametrize("kernel,shape", [("laplacian", None), ("matern52", None), ("rational_quadratic", 3.0),
                                          ("cauchy", None)])
def test_score_is_the_kernel_gradient_drift(kernel: str, shape) -> None:
    """score = h^2 (sum_j grad_x k(x, y_j) / sum_j k(x, y_j) - the same over the other negatives): the
    kernel-gradient drift of arXiv 2605.10727 (times h^2), here in closed form from dlog."""
    x, pos = _batch(False, 2, seed=2)
    h = 0.7
    entry = resolve(kernel, shape or 2.0)

    def side(y: torch.Tensor, mask: bool) -> torch.Tensor:
        d = x.unsqueeze(1) - y.unsqueeze(0)  # (N, M, D): x - y
        r = d.square().sum(-1).sqrt().clamp_min(1e-300)  # (N, M)
        k = entry.log(r, h, 2).exp()
        if mask:
            k = k * (1 - torch.eye(len(x), dtype=x.dtype))
        grad = (k * entry.dlog(r, h, 2) / r).unsqueeze(-1) * d  # (N, M, D): grad_x k(|x - y|)
        return grad.sum(1) / k.sum(1, keepdim=True)

    closed = h * h * (side(pos, False) - side(x, True))
    for backend in ("dense", "stream"):
        field = FieldSpec(kernel, h, kernel_shape=shape or 2.0, backend=backend)
        assert _rel(drift("score", x, pos, x, field), closed) < 1e-10
