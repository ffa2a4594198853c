"""Exact periodic sums on the 1-D torus for exponential-polynomial kernels, in O((N + M) log M).

A kernel k(r) = exp(-lam r) P(r) with P a polynomial (the Laplacian: P = 1; Matern 3/2 and 5/2:
degree 1 and 2; `Kernel.exp_poly` gives lam and P at bandwidth 1) has one-sided sums that separate
in the two points: exp(-lam (y - x)) (y - x)^i expands into powers of x times y^l exp(-lam y).
So every sum over the samples on one side of a point is a combination of cumulative sums of
y^l exp(-+lam y) over the sorted samples, read at the point's rank.

The periodic image sum of a one-sided function g(u) = exp(-lam u) R(u) (u >= 0) is again of that
form: T(s) = sum_{m >= 0} g(s + 2 pi m) = exp(-lam s) R~(s), with R~'s coefficients from
sum_m m^j q^m (q = exp(-2 pi lam), an Eulerian-polynomial closed form).  With p = (y - x) mod 2 pi
in [0, 2 pi), the displacement u to the images of y is p + 2 pi m (ahead) or -(2 pi - p) - 2 pi m
(behind), so

    S = sum_j T_k(p) + T_k(2 pi - p)
    G = sum_j T_uk(p) - T_uk(2 pi - p)          (moment: sum k(u) u)
    G = sum_j -T_k'(p) + T_k'(2 pi - p)         (gradient: sum grad_x k)

The cumulative sums are of exp(-+lam (y - pi)) and are read through their logs (summed in the log domain
throughout for the narrowest kernels), so no exp overflows at any bandwidth.  The expansion in powers of x
loses about (4 pi lam / h)^degree of float64's precision, so the plan is offered only where that stays
below SCAN_REL_ERROR (spectral_plan.scan_degree).
"""

from __future__ import annotations

import math

import torch

from .geometry import TWO_PI

SCAN_REL_ERROR = 1e-10  # the largest relative rounding error the expansion may cost (float64)


def cancellation(lam: float, degree: int, h: float) -> float:
    """The expansion's rounding error relative to the sums: eps_64 (4 pi lam / h)^degree."""
    return 2.2e-16 * max(1.0, 2.0 * TWO_PI * lam / h) ** degree


def _polylog_neg(q: float, top: int) -> list[float]:
    """W_j = sum_{m >= 0} m^j q^m for j = 0..top: q A_j(q) / (1 - q)^(j + 1), A_j the Eulerian polynomial."""
    rows = [[1.0]]
    for n in range(1, top + 1):
        prev = rows[-1]
        rows.append([(k + 1) * (prev[k] if k < len(prev) else 0.0) + (n - k) * (prev[k - 1] if k >= 1 else 0.0)
                     for k in range(n)])
    out = [1.0 / (1.0 - q)]
    for j in range(1, top + 1):
        out.append(q * sum(c * q**k for k, c in enumerate(rows[j])) / (1.0 - q) ** (j + 1))
    return out


def image_poly(coef: list[float], lam: float) -> list[float]:
    """Coefficients rho of T(s) = exp(-lam s) sum_i rho_i s^i = sum_{m >= 0} g(s + 2 pi m) for
    g(u) = exp(-lam u) sum_k coef_k u^k."""
    w = _polylog_neg(math.exp(-lam * TWO_PI), max(len(coef) - 1, 0))
    rho = [0.0] * len(coef)
    for k, c in enumerate(coef):
        for i in range(k + 1):
            rho[i] += c * math.comb(k, i) * TWO_PI ** (k - i) * w[k - i]
    return rho


def one_sided(exp_poly: tuple[float, tuple[float, ...]], h: float, moment: bool) -> tuple[float, list, list]:
    """lam and the polynomials of k(u) and of the vector part (u k(u), or k'(u)) at bandwidth h."""
    lam1, poly1 = exp_poly
    lam = lam1 / h
    k = [a / h**i for i, a in enumerate(poly1)]
    if moment:
        vec = [0.0] + k
    else:
        deriv = [i * a for i, a in enumerate(k)][1:] + [0.0]
        vec = [d - lam * a for d, a in zip(deriv, k)]
    return lam, image_poly(k, lam), image_poly(vec, lam)


def _evaluate(rho: list[float], s: float, lam: float) -> float:
    return math.exp(-lam * s) * sum(r * s**i for i, r in enumerate(rho))


LINEAR_SPAN = 600.0  # lam pi up to this: cumulative sums of exp(-+lam (y - pi)) neither overflow nor underflow


def _tables(ys, lam: float, degree: int):
    """log sum y^l exp(-sigma lam (y - pi)) over the sorted samples before each rank (prefix: the first
    r samples, row 0) and from each rank on (suffix, row 1); rows (sigma = +1, -1) x l <= degree."""
    import numpy as np

    with np.errstate(divide="ignore"):
        logy = np.log(ys)
        w = np.stack([-sigma * lam * (ys - math.pi) + (l * logy if l else 0.0)
                      for sigma in (1.0, -1.0) for l in range(degree + 1)])
        ninf = np.full((w.shape[0], 1), -np.inf)
        if lam * math.pi <= LINEAR_SPAN:
            e = np.exp(w)
            pre = np.log(np.cumsum(e, axis=1))
            suf = np.log(np.cumsum(e[:, ::-1], axis=1)[:, ::-1])
        else:  # narrow kernels: the same sums in the log domain
            pre = np.logaddexp.accumulate(w, axis=1)
            suf = np.logaddexp.accumulate(w[:, ::-1], axis=1)[:, ::-1]
    return np.concatenate([ninf, pre], axis=1), np.concatenate([suf, ninf], axis=1)


def _side(lam: float, sigma: float, shift, logs) -> list:
    """exp(sigma lam (shift - pi)) sum_j y_j^l exp(-sigma lam (y_j - pi)) over one side's samples, l <= degree."""
    import numpy as np

    return [np.exp(sigma * lam * (shift - math.pi) + log_l) for log_l in logs]


def _combine(rho: list[float], sigma: float, shift, sums: list):
    """sum_j exp(-lam s_j) R(s_j), s_j = sigma (y_j - shift), from the side's sums of y^l exp(...):
    R(sigma (y - shift)) = sum_l y^l sum_{i >= l} rho_i sigma^i C(i, l) (-shift)^(i - l)."""
    total = 0.0
    for l, sum_l in enumerate(sums):
        if l >= len(rho):
            break
        beta = sum(rho[i] * sigma**i * math.comb(i, l) * (-shift) ** (i - l) for i in range(l, len(rho)))
        total = total + beta * sum_l
    return total


def _one_set(xs, ys, lam, rho_k, rho_v, moment, self_pairs):
    """S (N,) and G (N,) of one sample set (numpy float64 on [0, 2 pi))."""
    import numpy as np

    order = np.argsort(ys, kind="stable")
    ys = ys[order]
    degree = max(len(rho_k), len(rho_v)) - 1
    pre, suf = _tables(ys, lam, degree)
    if self_pairs:  # y is x: the point's own rank splits the others, the point itself left out exactly
        behind = np.empty_like(order)
        behind[order] = np.arange(order.size)
        ahead, ties = behind + 1, None
    else:  # samples before the point: y < x (behind); from there on: y >= x (ahead, p = 0 for a tie)
        by_x = np.argsort(xs)  # sorted queries: a binary search that predicts its branches
        behind = np.empty_like(by_x)
        behind[by_x] = np.searchsorted(ys, xs[by_x], side="left")
        ahead, ties = behind, None
        if not moment:  # a tie's moment is 0 either way; its gradient is not
            ties = np.empty_like(by_x)
            ties[by_x] = np.searchsorted(ys, xs[by_x], side="right")
            ties -= behind
    rows = degree + 1  # rows [0, rows): sigma = +1 (T(p)); [rows, 2 rows): sigma = -1 (T(2 pi - p))
    sides = [(1.0, xs, _side(lam, 1.0, xs, suf[:rows, ahead])),
             (1.0, xs - TWO_PI, _side(lam, 1.0, xs - TWO_PI, pre[:rows, behind])),
             (-1.0, xs + TWO_PI, _side(lam, -1.0, xs + TWO_PI, suf[rows:, ahead])),
             (-1.0, xs, _side(lam, -1.0, xs, pre[rows:, behind]))]
    k = [_combine(rho_k, sigma, shift, sums) for sigma, shift, sums in sides]
    v = [_combine(rho_v, sigma, shift, sums) for sigma, shift, sums in sides]
    vp, vq = v[0] + v[1], v[2] + v[3]
    g = vp - vq if moment else vq - vp
    if ties is not None:  # a tie's gradient is the one-sided limit at p = 0: use the symmetric 0
        g = g + ties * (_evaluate(rho_v, 0.0, lam) - _evaluate(rho_v, TWO_PI, lam))
    return k[0] + k[1] + k[2] + k[3], g


def scan_sums(x: torch.Tensor, y: torch.Tensor, exp_poly: tuple, h: float, moment: bool,
              self_pairs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """S_i = sum_{j, n} k(u), u = y_j + 2 pi n - x_i, and G_i (moment: sum k(u) u; else sum grad_x k)
    on the 1-D torus, exactly (float64).  x (N, 1), y (M, 1) on [0, 2 pi); self_pairs: y is x, drop j = i.
    -> (N,), (N, 1)."""
    lam, rho_k, rho_v = one_sided(exp_poly, h, moment)
    xs = x[:, 0].detach().to(torch.float64).cpu().numpy()
    ys = y[:, 0].detach().to(torch.float64).cpu().numpy()
    s, g = _one_set(xs, ys, lam, rho_k, rho_v, moment, self_pairs)
    return torch.from_numpy(s), torch.from_numpy(g).unsqueeze(1)
