"""The drifting loss.  The stop-gradient lives here and nowhere else.

Two parts of the original paper's recipe are applied here, for every operator:
- several bandwidths summed, each field divided by its batch RMS first (`FieldSpec.bandwidth_scales`,
  `FieldSpec.drift_norm`); `deng` does this inside its own batch algorithm and keeps doing so;
- feature normalisation: samples, data and negatives scaled by one factor so that their mean
  pairwise distance is sqrt(D) (computed from the batch, no gradient through it); the bandwidth
  is then in those units.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch

from .geometry import distance
from .operators import FieldSpec, drift

_NORM_SUBSAMPLE = 1024  # feature_norm: points used to estimate the mean pairwise distance
_SCALES_INSIDE = ("deng",)  # operators that sum their own bandwidth_scales (with drift_norm) internally


def multi_bandwidth_drift(operator: str, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                          field: FieldSpec) -> torch.Tensor:
    """sum_s V_{h s} / (RMS of V_{h s} if drift_norm) for any registered operator.  -> (N, D)."""
    if operator in _SCALES_INSIDE or (field.bandwidth_scales == (1.0,) and not field.drift_norm):
        return drift(operator, x, pos, neg, field)
    total = torch.zeros_like(x)
    for scale in field.bandwidth_scales:
        single = dataclasses.replace(field, bandwidth=field.bandwidth * scale, bandwidth_scales=(1.0,), drift_norm=False)
        v = drift(operator, x, pos, neg, single)  # (N, D)
        if field.drift_norm:
            v = v / v.square().mean().sqrt().clamp_min(1e-12)
        total = total + v
    return total


def feature_scale(x: torch.Tensor, pos: torch.Tensor) -> float:
    """One factor s such that the mean pairwise distance of (x, pos) / s is sqrt(D)."""
    with torch.no_grad():
        pts = torch.cat([x[: _NORM_SUBSAMPLE // 2], pos[: _NORM_SUBSAMPLE // 2]]).detach()
        n = pts.shape[0]
        mean_dist = float(distance(pts, pts, False).sum() / max(n * (n - 1), 1))
    return max(mean_dist, 1e-12) / math.sqrt(x.shape[1])


def drift_loss(
    x: torch.Tensor, pos: torch.Tensor, operator: str, field: FieldSpec, stop_gradient: bool = True,
    neg: Optional[torch.Tensor] = None, feature_norm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and drift for generated samples x (N, D) against data pos (M, D).

    Negatives are x itself (neg=None; `field.neg_is_x` masks self-pairs) or a separate batch of
    generated samples neg (K, D), never differentiated.  stop_gradient=True: L = mean_i
    |x_i - stopgrad(x_i + V(x_i))|^2, the frozen-field (JKO) step, whose gradient is exactly
    -(2/N) V.  stop_gradient=False (ablation): L = mean_i |V(x_i)|^2 differentiated through V and
    through the negatives.  Both values equal E|V|^2.  With feature_norm the loss is taken in the
    normalised units; the returned V is in the samples' own units.
    Returns (loss scalar, V (N, D) detached).
    """
    s = feature_scale(x, pos) if feature_norm else 1.0
    xs, ps = x / s, pos / s
    if neg is not None:
        field = dataclasses.replace(field, neg_is_x=False)
    if stop_gradient:
        with torch.no_grad():
            x_frozen = xs.detach()
            negs = x_frozen if neg is None else neg.detach() / s
            v = multi_bandwidth_drift(operator, x_frozen, ps, negs, field)  # (N, D)
        target = (xs + v).detach()
        loss = (xs - target).square().sum(-1).mean()
        return loss, v * s
    negs = xs if neg is None else neg.detach() / s
    v = multi_bandwidth_drift(operator, xs, ps, negs, field)  # (N, D), differentiable in x and the negatives
    loss = v.square().sum(-1).mean()
    return loss, v.detach() * s
