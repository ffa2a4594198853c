"""Sample-quality metrics for targets without a spectrum, and their data-vs-data floors.

Every metric compares generated samples x (N, D) with data y (M, D) and is 0 for equal laws
in the limit of many samples; with finitely many samples it is not, so each metric comes with
a floor: the same metric between two independent data draws of the evaluation size
(`floor`).  A generator is as good as the data can tell when its metric is within a small
factor of the floor.

- `energy_distance` (metrics.py): 2E|X-Y| - E|X-X'| - E|Y-Y'|.
- `sliced_w2`: squared sliced Wasserstein-2, mean over random directions of the 1-D W2^2
  between the projected samples (sorted quantiles).
- `mmd2`: squared MMD with a sum of Gaussian kernels at several bandwidths (biased V-statistic).
- `frechet_distance`: |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x^1/2 S_y S_x^1/2)^1/2) between the
  Gaussians fitted to two feature sets (the Frechet / FID distance).
- `class_histogram`, `class_coverage`, `class_kl`, `class_max_deviation`: mode coverage from a
  classifier's predictions.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .geometry import sq_distance
from .metrics import energy_distance

MMD_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)  # mmd2: bandwidths as multiples of the reference scale


def sliced_w2(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, n_dirs: int = 128) -> float:
    """Squared sliced Wasserstein-2 over `n_dirs` random unit directions (drawn from gen).

    Unequal sample sizes compare quantiles at the midpoints of the smaller sample's ranks.
    """
    d = x.shape[1]
    dirs = torch.randn(d, n_dirs, generator=gen, dtype=torch.float64).to(x.device)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)  # (D, L)
    px = (x.to(torch.float64) @ dirs).sort(0).values  # (N, L)
    py = (y.to(torch.float64) @ dirs).sort(0).values  # (M, L)
    n = min(px.shape[0], py.shape[0])
    qx, qy = _quantiles(px, n), _quantiles(py, n)  # (n, L)
    return float((qx - qy).square().mean())


def _quantiles(sorted_proj: torch.Tensor, n: int) -> torch.Tensor:
    """Values at the n mid-rank quantiles (i + 0.5)/n of each sorted column, by linear interpolation."""
    m = sorted_proj.shape[0]
    if m == n:
        return sorted_proj
    pos = ((torch.arange(n, dtype=torch.float64, device=sorted_proj.device) + 0.5) / n) * m - 0.5  # (n,)
    pos = pos.clamp(0, m - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=m - 1)
    frac = (pos - lo).unsqueeze(1)
    return sorted_proj[lo] * (1 - frac) + sorted_proj[hi] * frac


def mmd2(x: torch.Tensor, y: torch.Tensor, scale: float, scales: Sequence[float] = MMD_SCALES) -> float:
    """Squared MMD (biased V-statistic) with k = sum_s exp(-|d|^2 / (2 (s * scale)^2)).

    `scale` fixes the kernel's length unit (use a property of the target such as the
    root-mean-square data distance / sqrt(2), so every trial of a target shares one kernel).
    """
    xx, yy, xy = sq_distance(x, x, False), sq_distance(y, y, False), sq_distance(x, y, False)
    total = 0.0
    for s in scales:
        g = -0.5 / (s * scale) ** 2
        total += float(torch.exp(g * xx).mean() + torch.exp(g * yy).mean() - 2.0 * torch.exp(g * xy).mean())
    return total


def mmd2_gaussians(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor, bandwidth: float) -> float:
    """Closed-form squared MMD between N(mu1, cov1) and N(mu2, cov2) for one Gaussian kernel of `bandwidth`.

    E k(X, Y) = det(I + (S_a + S_b)/h^2)^(-1/2) exp(-1/2 d^T (h^2 I + S_a + S_b)^-1 d), d = mu_a - mu_b.
    """

    def ek(ma: torch.Tensor, sa: torch.Tensor, mb: torch.Tensor, sb: torch.Tensor) -> float:
        d = (ma - mb).to(torch.float64)
        s = (sa + sb).to(torch.float64)
        eye = torch.eye(s.shape[0], dtype=torch.float64)
        det = torch.linalg.det(eye + s / bandwidth**2)
        quad = d @ torch.linalg.solve(bandwidth**2 * eye + s, d)
        return float(det.rsqrt() * torch.exp(-0.5 * quad))

    return ek(mu1, cov1, mu1, cov1) + ek(mu2, cov2, mu2, cov2) - 2.0 * ek(mu1, cov1, mu2, cov2)


def gaussian_stats(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features f (N, F), in float64."""
    f = f.to(torch.float64)
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / max(f.shape[0] - 1, 1)


def frechet_from_stats(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2) (symmetric eigen-decompositions, no sqrtm)."""
    mu1, mu2, cov1, cov2 = (t.to(torch.float64) for t in (mu1, mu2, cov1, cov2))
    evals, evecs = torch.linalg.eigh(cov1)
    root1 = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T  # cov1^(1/2)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()  # tr (S1^1/2 S2 S1^1/2)^1/2
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2.0 * cross)


def frechet_distance(fx: torch.Tensor, fy: torch.Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (N, F), (M, F)."""
    return frechet_from_stats(*gaussian_stats(fx), *gaussian_stats(fy))


def class_histogram(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Share of each class among predicted labels (n,) -> (C,) float64, sums to 1."""
    counts = torch.bincount(labels.long().cpu(), minlength=n_classes).to(torch.float64)
    return counts / counts.sum().clamp_min(1)


def class_coverage(hist: torch.Tensor, min_share: float = 0.1) -> float:
    """Fraction of classes generated: those with at least `min_share` of their uniform share 1/C."""
    c = hist.numel()
    return float((hist >= min_share / c).to(torch.float64).mean())


def class_kl(hist: torch.Tensor) -> float:
    """KL(histogram || uniform) in nats: 0 for a uniform histogram, log C for a single class."""
    c = hist.numel()
    h = hist.to(torch.float64)
    nz = h > 0
    return float((h[nz] * (h[nz] * c).log()).sum())


def class_max_deviation(hist: torch.Tensor) -> float:
    """max_c |share_c - 1/C| (as a fraction; x100 for percentage points)."""
    return float((hist - 1.0 / hist.numel()).abs().max())


def floor(metric: Callable[[torch.Tensor, torch.Tensor], float], draw: Callable[[int], torch.Tensor], n: int) -> float:
    """The data-vs-data floor: `metric` between two independent data draws of n samples each."""
    return metric(draw(n), draw(n))


def plane_metrics(x: torch.Tensor, y: torch.Tensor, scale: float, gen: torch.Generator) -> dict[str, float]:
    """energy_distance, sliced_w2 and mmd2 of generated x against data y on the plane."""
    return {
        "energy_distance": energy_distance(x, y, False),
        "sliced_w2": sliced_w2(x, y, gen),
        "mmd2": mmd2(x, y, scale),
    }


def rms_scale(y: torch.Tensor) -> float:
    """sqrt(E|Y - Y'|^2 / 2) = sqrt(trace Cov Y): the data's length unit (e.g. for mmd2's kernels)."""
    return math.sqrt(float(y.to(torch.float64).var(0).sum()))
