"""Spectral drift operators on the torus: the periodic kernel through its Fourier series.

On the torus [0, 2pi)^D every convolution-form operator (meanshift, score, mmd) is built from
two sums per sample set,

    S(x)  = sum_j k_per(x - y_j)           G(x) = sum_j Phi_per(x - y_j)  (a vector field)

with k_per the periodised kernel, Phi = -k(u) u (mean-shift: the kernel-weighted displacement
y - x, summed over images) or grad k (score, mmd).  Their Fourier coefficients are closed
forms of the kernel's normalised transform kappa (`theory.SPECTRA`, same name) and its mass
Z = int k (`Kernel.mass`):

    k_per:    Z kappa(|k| h) / (2 pi)^D
    grad k:   i k  Z kappa(|k| h) / (2 pi)^D
    k(u) u:   i (k / |k|) Z h kappa'(|k| h) / (2 pi)^D

so S and G are one type-1 NUFFT (samples -> modes) and one batched type-2 NUFFT (modes ->
points): O((N + M) w^D + K^D log K) instead of O(N M I).  The periodic sum is exact up to the
Fourier truncation, chosen from a tail bound (`TRUNCATION_TOL`), and FINUFFT's precision.

Kernels whose coefficients decay slowly (the Laplacian's cusp: kappa ~ s^-(D+1), and the
gradient field's coefficients do not decay at all in 1-D) are Ewald-split:

    k = k chi + k (1 - chi),    chi(r) = exp(-(r / a)^8)

The near part k chi is negligible beyond r_c = 1.6 a (chi = 2e-19 there) and is summed in real
space over the strips of samples near each point (near.py); the far part k (1 - chi) vanishes to
8th order at r = 0, so it is smooth and its coefficients (Z kappa minus the near part's transform, a
radial quadrature) decay fast.  `plan_for` (spectral_plan.py) picks direct, Ewald, near-only or "stream"
(the block-streaming code) from a cost model calibrated by the benchmark (docs/benchmarks.md); the
coefficient tables are in fourier.py, the near field in near.py.

The sums are absolute, not log-domain: a point whose normaliser S is below what the NUFFT
resolves (far from every sample compared with h) is redone by the streaming code, so results
stay exact where the streaming code's max-shifted softmax is.  CPU only (FINUFFT); other
devices stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from . import expscan, near
from .field import FieldSpec
from .fourier import (TRUNCATION_TOL, _kappa, _near_radial, _near_radial_direct, coefficients,  # noqa: F401
                      kappa_prime, mass, multipliers, truncation)
from .geometry import TWO_PI
from .kernels import KERNELS
from .spectral_plan import (NEAR_ONLY_LOG, NUFFT_EPS, Plan, forced_plan, nufft_available, nufft_choice,  # noqa: F401
                            nufft_eps, plan_for, supported)

FALLBACK = 1e6  # normalisers below FALLBACK x their NUFFT error estimate are redone by streaming


# ------------------------------------------------------------------ sums


@dataclass
class Sums:
    """S (N,) and G (N, D) of one sample set at the points, float64."""

    s: torch.Tensor
    g: torch.Tensor
    floor: float  # S below this is not resolved to ~1e-6 relative: redo by streaming


def field_sums(x: torch.Tensor, sets: list[tuple[torch.Tensor, bool]], kernel: str, h: float, plan: Plan,
               moment: bool, eps: float) -> list[Sums]:
    """For each sample set (y, self_pairs): S(x) = sum_j k_per(x - y_j) and G(x), the first
    moment sum_j k (y_j - x) over images (moment=True) or the gradient sum_j grad_x k(x - y_j);
    self_pairs: y is x, drop j = i.  One type-1 NUFFT per two sets, one batched type-2 for all."""
    import numpy as np

    dim, n = x.shape[1], x.shape[0]
    if plan.method == "near":
        return _near_only_sums(x, sets, kernel, h, plan, moment)
    if plan.method == "scan":
        return _scan_sums(x, sets, kernel, h, moment)
    c0, _, at_zero = coefficients(kernel, float(h), dim, plan.modes, plan.a)
    mult = multipliers(kernel, float(h), dim, plan.modes, plan.a, moment)
    xs = torch.remainder(x.detach().to(torch.float64).cpu(), TWO_PI).numpy()
    shape = (2 * plan.modes + 1,) * dim
    pts = [xs if self_pairs else torch.remainder(y.detach().to(torch.float64).cpu(), TWO_PI).numpy()
           for y, self_pairs in sets]
    sigma = nufft_choice(plan.modes, dim, n, sum(p.shape[0] for p in pts), eps)[1]  # the cost model's upsampling
    opts = {"eps": eps, "nthreads": torch.get_num_threads(), "upsampfac": sigma}
    # Two sets share one type-1 transform (strengths 1 and i) and each of the 1 + D type-2 grids: every
    # mult row times a real set's transform is Hermitian, so the type-2 sum is real, and the pair's
    # sums come back as its real and imaginary parts (half the FFTs of one transform per set)
    grids, pairs = [], [pts[i : i + 2] for i in range(0, len(pts), 2)]
    for pair in pairs:
        c = np.concatenate([np.full(p.shape[0], 1j ** i, dtype=np.complex128) for i, p in enumerate(pair)])
        grids.append(mult * torch.from_numpy(_type1(np.concatenate(pair), c, shape, opts)))
    out = torch.from_numpy(_type2(xs, np.ascontiguousarray(torch.cat(grids).numpy()), opts))
    out = out.view(len(pairs), 1 + dim, n)
    res = torch.stack([out.real, out.imag], 1).reshape(2 * len(pairs), 1 + dim, n)
    counted = [sum(p.shape[0] for p in pair) for pair in pairs for _ in pair]  # strengths in each transform
    sums = []
    for idx, ((y, self_pairs), ys) in enumerate(zip(sets, pts)):
        s, g = res[idx, 0].clone(), res[idx, 1:].T.contiguous()
        if plan.a > 0.0:
            ns, ng = near.near_sums(torch.from_numpy(xs), torch.from_numpy(ys), kernel, h, plan.a, moment, self_pairs)
            s, g = s + ns, g + ng
        if self_pairs:
            s = s - at_zero  # the self pair's periodic (far) kernel; its vector terms vanish by symmetry
        # error per point: NUFFT ~ eps sum_k |c_k a_k| (|a_0| = M, |a_k| ~ sqrt(M) otherwise), plus
        # the truncated tail, at most TRUNCATION_TOL / min(h, 1) of M Z / (2 pi)^D
        m = ys.shape[0]
        m_t = counted[idx]
        unit = m * mass(kernel, h, dim) / TWO_PI**dim
        c_mid, c_sum = abs(float(c0.reshape(-1)[c0.numel() // 2])), float(c0.abs().sum())
        nufft_err = eps * (m_t * c_mid + math.sqrt(m_t) * c_sum)
        floor = FALLBACK * (nufft_err + TRUNCATION_TOL / min(h, 1.0) * unit)
        sums.append(Sums(s.to(x.device), g.to(x.device), floor))
    return sums


def _pairwise_sums(x: torch.Tensor, sets: list[tuple[torch.Tensor, bool]], sums_of, floor_of) -> list[Sums]:
    """The plans without a Fourier part: sums_of(xs, ys, self_pairs) -> (S, G) for each sample set, on the
    wrapped float64 CPU copies; floor_of(ys) the S below which a point is redone by streaming."""
    xs = torch.remainder(x.detach().to(torch.float64).cpu(), TWO_PI)
    sums = []
    for y, self_pairs in sets:
        ys = xs if self_pairs else torch.remainder(y.detach().to(torch.float64).cpu(), TWO_PI)
        s, g = sums_of(xs, ys, self_pairs)
        sums.append(Sums(s.to(x.device), g.to(x.device), floor_of(ys)))
    return sums


def _near_only_sums(x: torch.Tensor, sets: list[tuple[torch.Tensor, bool]], kernel: str, h: float,
                    plan: Plan, moment: bool) -> list[Sums]:
    """The near-only plan: S and G summed over the pairs closer than plan.cutoff (the kernel is below
    exp(-NEAR_ONLY_LOG) of k(0) = 1 beyond it, and only the minimum image is that close); what is left
    out is at most m exp(-NEAR_ONLY_LOG) per point, so S below FALLBACK times that is redone by streaming."""
    return _pairwise_sums(
        x, sets, lambda xs, ys, self_pairs: near.near_sums(xs, ys, kernel, h, math.inf, moment, self_pairs,
                                                           r_c=plan.cutoff),
        lambda ys: FALLBACK * ys.shape[0] * math.exp(-NEAR_ONLY_LOG))


SCAN_FLOOR = 1e-250  # the scan's S below this (a point ~570 h from every sample) is redone by streaming


def _scan_sums(x: torch.Tensor, sets: list[tuple[torch.Tensor, bool]], kernel: str, h: float,
               moment: bool) -> list[Sums]:
    """The 1-D scan plan: exact prefix sums over the sorted samples (expscan.py), no Fourier part."""
    exp_poly = KERNELS.get(kernel).exp_poly
    return _pairwise_sums(x, sets,
                          lambda xs, ys, self_pairs: expscan.scan_sums(xs, ys, exp_poly, h, moment, self_pairs),
                          lambda ys: SCAN_FLOOR)


PLAN_CACHE_MAX = 8  # FINUFFT plans kept (type, grid, transforms, precision, threads, sigma): a plan's set-up is about
PLAN_CACHE_GRID = 1 << 20  # 0.4 ms, a third of a small field's time; only plans of fine grids up to this many modes
_PLANS: dict = {}


def _nufft_plan(kind: int, shape: tuple, n_trans: int, opts: dict):
    """A FINUFFT plan for this transform, reused across calls (only its points change)."""
    import finufft

    key = (kind, shape, n_trans, opts["eps"], opts["nthreads"], opts["upsampfac"])
    plan = _PLANS.pop(key, None)
    if plan is None:
        plan = finufft.Plan(kind, shape, n_trans=n_trans, isign=-1 if kind == 1 else 1, **opts)
    if math.prod(2 * n for n in shape) <= PLAN_CACHE_GRID:
        _PLANS[key] = plan  # most recent last
        while len(_PLANS) > PLAN_CACHE_MAX:
            _PLANS.pop(next(iter(_PLANS)))
    return plan


def _type1(pts, c, shape, opts):
    """sum_j c_j e^{-i k . y_j} on the (2K+1)^D grid."""
    import numpy as np

    plan = _nufft_plan(1, shape, 1, opts)
    plan.setpts(*[np.ascontiguousarray(pts[:, i]) for i in range(pts.shape[1])])
    return plan.execute(c)


def _type2(pts, f, opts):
    """sum_k f_k e^{i k . x} at the points, for each of the stacked grids f."""
    import numpy as np

    plan = _nufft_plan(2, tuple(f.shape[1:]), f.shape[0], opts)
    plan.setpts(*[np.ascontiguousarray(pts[:, i]) for i in range(pts.shape[1])])
    return plan.execute(f)


# ------------------------------------------------------------------ operators


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where((den > 0).unsqueeze(1), num / safe.unsqueeze(1), torch.zeros_like(num))


def _sides(x, pos, neg, field: FieldSpec, h: float, plan: Plan, moment: bool) -> tuple[Sums, Sums]:
    eps = nufft_eps(x.dtype)
    sp, sn = field_sums(x, [(pos, False), (neg, field.neg_is_x)], field.kernel, h, plan, moment, eps)
    return sp, sn


def _redo_normalised(x, pos, neg, field: FieldSpec, h: float, sides: tuple[Sums, Sums], grad_weight: bool) -> None:
    """Points whose normaliser is below what the NUFFT resolves: exact streaming sums instead."""
    from . import streaming

    geo = None  # the streaming geometry (its image shells: a heavy tail's take ~1 ms at a new h) only if needed
    for sums, y, mask in ((sides[0], pos, False), (sides[1], neg, field.neg_is_x)):
        bad = torch.nonzero(~(sums.s > sums.floor)).squeeze(1)
        if bad.numel() == 0:
            continue
        if geo is None:
            geo = streaming.geometry(field, h, x.shape[1])
        # max-shifted sums: only their ratio is used, and it is exact
        res, _ = streaming.normalised_pass_subset(x[bad], y, geo, mask, bad, disp=True, grad_weight=grad_weight)
        sums.s[bad] = res.s.to(sums.s.device)
        sums.g[bad] = res.disp.to(sums.g.device)


def meanshift(x, pos, neg, field: FieldSpec, plan: Plan, h: Optional[float] = None) -> torch.Tensor:
    """Spectral mean-shift drift on the torus.  -> (N, D)."""
    h = field.bandwidth if h is None else h
    sides = _sides(x, pos, neg, field, h, plan, moment=True)
    _redo_normalised(x, pos, neg, field, h, sides, grad_weight=False)
    sp, sn = sides
    return (_ratio(sp.g, sp.s) - _ratio(sn.g, sn.s)).to(x.dtype)


def score(x, pos, neg, field: FieldSpec, plan: Plan, h: Optional[float] = None) -> torch.Tensor:
    """Spectral h^2 (grad log p_h - grad log q_h) on the torus.  -> (N, D)."""
    h = field.bandwidth if h is None else h
    sides = _sides(x, pos, neg, field, h, plan, moment=False)
    _redo_normalised(x, pos, neg, field, h, sides, grad_weight=True)
    sp, sn = sides
    return (h * h * (_ratio(sp.g, sp.s) - _ratio(sn.g, sn.s))).to(x.dtype)


def mmd(x, pos, neg, field: FieldSpec, plan: Plan, h: Optional[float] = None) -> torch.Tensor:
    """Spectral E_p[grad k] - E_q[grad k] on the torus (absolute sums: no fallback needed)."""
    h = field.bandwidth if h is None else h
    sp, sn = _sides(x, pos, neg, field, h, plan, moment=False)
    n_neg = neg.shape[0] - (1 if field.neg_is_x else 0)
    return (sp.g / pos.shape[0] - sn.g / max(n_neg, 1)).to(x.dtype)


SPECTRAL_IMPLEMENTATIONS = {"meanshift": meanshift, "score": score, "mmd": mmd}
