"""The Tobit (right-censored Gaussian) regression y = a + b x + N(0, sigma^2) behind every scaling-law fit.

Newton's method on the log-likelihood in Olsen's parametrisation (a/sigma, b/sigma, 1/sigma), where it is
concave; standardised data for conditioning; Wald standard errors from the observed information.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import special

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_GAMMA_SCALE = 1e3  # soft cap on 1/sigma (standardised units): a perfect fit keeps a finite likelihood


class _Data(NamedTuple):
    """One fit's standardised points split into observed and censored, with the sums that do not change."""

    xo: np.ndarray
    yo: np.ndarray
    xc: np.ndarray
    yc: np.ndarray
    n_obs: np.integer
    sums: tuple  # sum xo, xo^2, yo, xo yo, yo^2: the observed points' constant Hessian terms


def _split(x: np.ndarray, y: np.ndarray, cens: np.ndarray) -> _Data:
    obs = ~cens
    xo, yo = x[obs], y[obs]
    return _Data(xo, yo, x[cens], y[cens], obs.sum(),
                 (xo.sum(), (xo ** 2).sum(), yo.sum(), (xo * yo).sum(), (yo ** 2).sum()))


def _loglik(theta: np.ndarray, d: _Data, derivs: bool = True):
    """Tobit log-likelihood in Olsen's parameters theta = (a/sigma, b/sigma, 1/sigma), where it is concave.

    Observed y: log gamma - (gamma y - delta.x)^2 / 2 (dropping -log(2 pi)/2); right-censored at y:
    log Phi(delta.x - gamma y).  Returns (value, gradient, Hessian) or the value alone.
    """
    da, db, g = theta
    xo, yo, xc, yc, n_obs = d.xo, d.yo, d.xc, d.yc, d.n_obs
    r = g * yo - da - db * xo
    w = da + db * xc - g * yc
    log_cdf = special.log_ndtr(w)
    val = n_obs * math.log(g) - 0.5 * (r ** 2).sum() + log_cdf.sum() - 0.5 * (g / _GAMMA_SCALE) ** 2
    if not derivs:
        return val
    m = np.exp(-0.5 * w ** 2 - _HALF_LOG_2PI - log_cdf)  # pdf / cdf (inverse Mills ratio)
    q = m * (w + m)
    s_xo, s_xo2, s_yo, s_xoyo, s_yo2 = d.sums
    grad = np.array([
        r.sum() + m.sum(),
        (r * xo).sum() + (m * xc).sum(),
        n_obs / g - (r * yo).sum() - (m * yc).sum() - g / _GAMMA_SCALE ** 2,
    ])
    h = np.empty((3, 3))
    h[0, 0] = -n_obs - q.sum()
    h[0, 1] = h[1, 0] = -s_xo - (q * xc).sum()
    h[1, 1] = -s_xo2 - (q * xc ** 2).sum()
    h[0, 2] = h[2, 0] = s_yo + (q * yc).sum()
    h[1, 2] = h[2, 1] = s_xoyo + (q * xc * yc).sum()
    h[2, 2] = -n_obs / g ** 2 - s_yo2 - (q * yc ** 2).sum() - 1.0 / _GAMMA_SCALE ** 2
    return val, grad, h


def _newton(theta: np.ndarray, d: _Data, iters: int = 200) -> np.ndarray:
    """Damped Newton ascent of the concave Tobit log-likelihood, keeping 1/sigma > 0."""
    val, grad, h = _loglik(theta, d)
    for _ in range(iters):
        try:
            step = -np.linalg.solve(h - 1e-12 * np.eye(3), grad)
        except np.linalg.LinAlgError:
            step = grad
        t = 1.0
        while t > 1e-10:
            cand = theta + t * step
            if cand[2] > 0:
                cv = _loglik(cand, d, derivs=False)
                if np.isfinite(cv) and cv >= val - 1e-12:
                    break
            t *= 0.5
        else:
            break
        theta = cand
        new_val, grad, h = _loglik(theta, d)
        done = (abs(new_val - val) < 1e-10 * (1 + abs(val))
                and np.max(np.abs(t * step)) < 1e-8 * (1 + np.max(np.abs(theta))))
        val = new_val
        if done:
            break
    return theta


def tobit_fit(x: np.ndarray, y: np.ndarray, censored: np.ndarray) -> tuple[float, float, float, float]:
    """Max-likelihood (a, b, sigma, loglik) of y = a + b x + N(0, sigma^2), y right-censored where `censored`."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    cens = np.asarray(censored, dtype=bool)
    mx, sx = x.mean(), x.std() or 1.0
    my, sy = y.mean(), y.std() or 1.0
    xs, ys = (x - mx) / sx, (y - my) / sy  # standardised for conditioning
    b0, a0 = np.polyfit(xs, ys, 1)
    s0 = max(float(np.std(ys - a0 - b0 * xs)), 0.05)
    d = _split(xs, ys, cens)
    da, db, g = _newton(np.array([a0 / s0, b0 / s0, 1.0 / s0]), d)
    a_s, b_s, s_s = da / g, db / g, 1.0 / g
    b = b_s * sy / sx
    a = my + sy * a_s - b * mx
    sigma = s_s * sy
    # exact log-likelihood of y (with the constant and the standardisation's Jacobian, without the soft cap)
    loglik = _loglik(np.array([da, db, g]), d, derivs=False) + 0.5 * (g / _GAMMA_SCALE) ** 2
    loglik += -(~cens).sum() * (_HALF_LOG_2PI + math.log(sy))
    return float(a), float(b), float(sigma), float(loglik)


def _loglik_ab(theta: np.ndarray, x: np.ndarray, y: np.ndarray, cens: np.ndarray) -> float:
    """Tobit log-likelihood of y in the usual parameters (a, b, log sigma)."""
    a, b, log_s = theta
    s = math.exp(log_s)
    z = (y - a - b * x) / s
    return float(np.sum(-0.5 * z[~cens] ** 2 - _HALF_LOG_2PI - log_s) + np.sum(special.log_ndtr(-z[cens])))


def wald_se(x: np.ndarray, y: np.ndarray, cens: np.ndarray, a: float, b: float, sigma: float) -> tuple[float, float]:
    """Standard errors of (a, b) from the observed information (central-difference Hessian) at the MLE."""
    theta = np.array([a, b, math.log(sigma)])
    h = 1e-4 * (1.0 + np.abs(theta))
    hess = np.empty((3, 3))
    for i in range(3):
        for j in range(i, 3):
            ei, ej = np.eye(3)[i] * h[i], np.eye(3)[j] * h[j]
            f = [_loglik_ab(theta + si * ei + sj * ej, x, y, cens) for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
            hess[i, j] = hess[j, i] = (f[0] - f[1] - f[2] + f[3]) / (4 * h[i] * h[j])
    try:
        cov = np.linalg.inv(-hess)
    except np.linalg.LinAlgError:
        return math.nan, math.nan
    d = np.diag(cov)
    if not np.all(np.isfinite(d[:2])) or np.any(d[:2] <= 0):
        return math.nan, math.nan
    return float(math.sqrt(d[0])), float(math.sqrt(d[1]))
