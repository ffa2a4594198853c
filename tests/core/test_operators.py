"""Drift operators against closed forms, identities and direct transcriptions (docs/theory.md: drift field, score identity, Sinkhorn drift)."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core.kernels import KERNELS
from drift_sweeps.core.loss import drift_loss
from drift_sweeps.core.operators import OPERATORS, FieldSpec, drift, sinkhorn_conditional
from drift_sweeps.core.catalog import make_target
from drift_sweeps.core.targets import TargetSpec

torch.set_default_dtype(torch.float32)


def _samples(seed: int, n: int, periodic: bool, dim: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g, dtype=torch.float64)
    return 2 * math.pi * x if periodic else 3.0 * x - 1.5


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("h", [0.3, 0.8])
def test_gaussian_meanshift_equals_score(periodic: bool, h: float) -> None:
    """Tweedie: with the Gaussian kernel, mean shift = h^2 (grad log p_h - grad log q_h)."""
    x, pos = _samples(0, 200, periodic), _samples(1, 300, periodic)
    field = FieldSpec("gaussian", h, periodic=periodic, neg_is_x=True)
    ms = drift("meanshift", x, pos, x, field)
    sc = drift("score", x, pos, x, field)
    assert (ms - sc).abs().max() < 1e-5


@pytest.mark.parametrize("operator", OPERATORS.names())
@pytest.mark.parametrize("kernel", KERNELS.names())
def test_antisymmetry(operator: str, kernel: str) -> None:
    """V_{p,q} = -V_{q,p} (negatives given as separate samples, no self-mask)."""
    x, p, q = _samples(0, 64, False), _samples(1, 96, False), _samples(2, 80, False) + 0.3
    field = FieldSpec(kernel, 0.7, periodic=False, neg_is_x=False)
    v_pq = drift(operator, x, p, q, field)
    v_qp = drift(operator, x, q, p, field)
    scale = v_pq.abs().max()
    assert scale > 0
    assert (v_pq + v_qp).abs().max() <= 1e-5 * max(1.0, float(scale.detach()))


@pytest.mark.parametrize("operator", OPERATORS.names())
@pytest.mark.parametrize("periodic", [False, True])
def test_drift_vanishes_when_p_equals_q(operator: str, periodic: bool) -> None:
    """V_{p,p} = 0: exactly for identical sample sets; in the large-sample limit for two samples.

    Tolerance for two independent samples of the same p: |V_{p,p'}| below 10% of |V_{p,q}| for
    a genuinely different q (sampling error ~ 1/sqrt(M) with M = 8000 data and negatives).
    """
    gen = torch.Generator().manual_seed(3)
    if periodic:
        target = make_target("torus2d", TargetSpec(k_max=2, amplitude=0.8))
        other = lambda n: math.pi + 0.5 * torch.randn(n, 2, generator=gen)  # noqa: E731 - a bump
    else:
        target = make_target("gaussian_grid", TargetSpec(k_max=2))
        other = lambda n: make_target("swiss_roll", TargetSpec()).sample(n, gen)  # noqa: E731
    x = target.sample(64, gen)
    p1, p2, q = target.sample(8000, gen), target.sample(8000, gen), other(8000)
    field = FieldSpec("gaussian", 0.5, periodic=periodic, neg_is_x=False, sinkhorn_iters=20)
    assert drift(operator, x, p1, p1, field).abs().max() < 1e-6
    same = drift(operator, x, p1, p2, field).norm(dim=1).mean()
    diff = drift(operator, x, p1, q, field).norm(dim=1).mean()
    assert same < 0.1 * diff, (float(same), float(diff))


def test_sinkhorn_without_iterations_is_gaussian_meanshift() -> None:
    """docs/theory.md#sinkhorn-drift: no Sinkhorn iterations (row normalisation only) and eps = h^2 give mean shift."""
    x, p, q = _samples(0, 50, True), _samples(1, 70, True), _samples(2, 60, True)
    field = FieldSpec("gaussian", 0.6, periodic=True, neg_is_x=False, sinkhorn_iters=0)
    assert (drift("sinkhorn", x, p, q, field) - drift("meanshift", x, p, q, field)).abs().max() < 1e-6


def test_sinkhorn_plan_has_both_marginals() -> None:
    """After enough iterations the plan pi_ij = a_i pi(j|i) has uniform column sums too."""
    x, y = _samples(0, 40, False), _samples(1, 60, False)
    logk = -torch.cdist(x, y).square() / (2 * 0.5**2)
    cond = sinkhorn_conditional(logk, 300)  # (N, M), rows sum to 1
    plan = cond / x.shape[0]
    assert torch.allclose(plan.sum(0), torch.full((60,), 1 / 60, dtype=plan.dtype), atol=1e-6)


def _deng_transcription(x, pos, neg, hs, normalise):
    """docs/theory.md#drift-field, Algorithm 2, transcribed literally (plane, negatives = x)."""
    v_total = torch.zeros_like(x)
    for h in hs:
        dist_pos = torch.cdist(x, pos)
        dist_neg = torch.cdist(x, neg) + 1e6 * torch.eye(x.shape[0], dtype=x.dtype)  # self-mask
        logits = -torch.cat([dist_pos, dist_neg], dim=1) / h
        a = torch.sqrt(torch.softmax(logits, dim=1) * torch.softmax(logits, dim=0))
        a_pos, a_neg = a[:, : pos.shape[0]], a[:, pos.shape[0]:]
        w_pos = a_pos * a_neg.sum(1, keepdim=True)
        w_neg = a_neg * a_pos.sum(1, keepdim=True)
        v = w_pos @ pos - w_neg @ neg
        if normalise:
            v = v / v.square().mean().sqrt()
        v_total = v_total + v
    return v_total


@pytest.mark.parametrize("scales,normalise", [((1.0,), False), ((0.5, 1.0, 2.0), True)])
def test_deng_matches_direct_transcription(scales, normalise) -> None:
    x, pos = _samples(0, 90, False), _samples(1, 110, False)
    field = FieldSpec("laplacian", 0.4, periodic=False, neg_is_x=True, bandwidth_scales=scales, drift_norm=normalise)
    ours = drift("deng", x, pos, x, field)
    ref = _deng_transcription(x, pos, x, [0.4 * s for s in scales], normalise)
    assert (ours - ref).abs().max() < 1e-5 * max(1.0, float(ref.abs().max()))


@pytest.mark.parametrize("operator", OPERATORS.names())
@pytest.mark.parametrize("periodic", [False, True])
def test_stop_gradient_loss_gradient_is_minus_two_v_over_n(operator: str, periodic: bool) -> None:
    """With the stop-gradient, d loss / d x = -(2/N) V exactly, for every operator."""
    x = _samples(0, 48, periodic).float().requires_grad_(True)
    pos = _samples(1, 64, periodic).float()
    field = FieldSpec("gaussian", 0.5, periodic=periodic, neg_is_x=True, sinkhorn_iters=10)
    loss, v = drift_loss(x, pos, operator, field, stop_gradient=True)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.allclose(grad, -2.0 / x.shape[0] * v, atol=1e-7, rtol=1e-6)
    assert loss.item() == pytest.approx(float(v.square().sum(1).mean()), rel=1e-5)


@pytest.mark.parametrize("operator", OPERATORS.names())
def test_no_stop_gradient_differentiates_through_v(operator: str) -> None:
    """The ablation's gradient is that of E|V|^2 through V and the negatives, not -(2/N) V."""
    x = _samples(0, 40, False).float().requires_grad_(True)
    pos = _samples(1, 50, False).float()
    field = FieldSpec("gaussian", 0.5, periodic=False, neg_is_x=True, sinkhorn_iters=5)
    loss, v = drift_loss(x, pos, operator, field, stop_gradient=False)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(grad).all()
    assert loss.item() == pytest.approx(float(v.square().sum(1).mean()), rel=1e-5)
    assert not torch.allclose(grad, -2.0 / x.shape[0] * v, atol=1e-6)
    # finite-difference check of the directional derivative
    d = torch.randn_like(x)
    with torch.no_grad():
        lp, _ = drift_loss(x.double() + 1e-4 * d.double(), pos.double(), operator, field, False)
        lm, _ = drift_loss(x.double() - 1e-4 * d.double(), pos.double(), operator, field, False)
    fd = float(lp - lm) / 2e-4
    assert float((grad * d).sum()) == pytest.approx(fd, rel=2e-2, abs=1e-6)
