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
import logging
import math
from typing import Optional

import torch

from .geometry import distance
from .operators import FieldSpec, drift
from .spectral_plan import one_step

log = logging.getLogger(__name__)

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
    if stop_gradient:
        return drift_losses([x], [pos], [neg], operator, field, feature_norm)[0]
    s, xs, ps, _ = _scaled(x, pos, neg, feature_norm)
    if neg is not None:
        field = dataclasses.replace(field, neg_is_x=False)
    negs = xs if neg is None else neg.detach() / s
    v = multi_bandwidth_drift(operator, xs, ps, negs, field)  # (N, D), differentiable in x and the negatives
    loss = v.square().sum(-1).mean()
    return loss, v.detach() * s


def _scaled(x: torch.Tensor, pos: torch.Tensor, neg: Optional[torch.Tensor],
            feature_norm: bool) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s, x / s, pos / s, the frozen negatives / s): the inputs in the feature-normalised units."""
    s = feature_scale(x, pos) if feature_norm else 1.0
    xs = x / s
    negs = xs.detach() if neg is None else neg.detach() / s
    return s, xs, pos / s, negs


_NOT_BATCHED: set[str] = set()  # operators/fields that do not run under torch.vmap: looped from then on


def drift_losses(xs: list[torch.Tensor], poss: list[torch.Tensor], negs: list[Optional[torch.Tensor]],
                 operator: str, field: FieldSpec, feature_norm: bool = False, batched: Optional[bool] = None
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The stop-gradient loss and drift of several independent trials that share the operator and the field.

    batched (default: on a GPU): one field computation over a leading trial axis (torch.vmap of the dense
    backend, whose pair blocks a GPU fills) where the shapes agree and the operator runs under vmap; else
    one call per trial with the field's own backend (on a CPU the per-trial backends are already
    compute-bound and faster).  Each entry equals `drift_loss` of that trial alone, exactly when looped and
    within float rounding when batched.  A packed sweep (`pack: P`) runs its trials' steps through here."""
    if negs[0] is not None:
        field = dataclasses.replace(field, neg_is_x=False)
    scaled = [_scaled(x, p, n, feature_norm) for x, p, n in zip(xs, poss, negs)]
    if batched is None:
        batched = xs[0].is_cuda
    with torch.no_grad():
        vs = _batched_field(operator, field, [(a.detach(), b, c) for _, a, b, c in scaled], batched)
    out = []
    for (s, x_s, _, _), v in zip(scaled, vs):
        target = (x_s + v).detach()
        out.append(((x_s - target).square().sum(-1).mean(), v * s))
    return out


def _batched_field(operator: str, field: FieldSpec, inputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                   batched: bool) -> list[torch.Tensor]:
    """V of each (x, pos, neg): vmapped over the trials when it can be, else a loop."""
    key = repr((operator, dataclasses.replace(field, bandwidth=1.0)))  # the bandwidth does not decide it
    same = len({tuple(t.shape for t in args) for args in inputs}) == 1
    if batched and len(inputs) > 1 and same and key not in _NOT_BATCHED:
        dense = dataclasses.replace(field, backend="dense")
        stacked = [torch.stack(list(t)) for t in zip(*inputs)]
        try:
            return list(torch.vmap(lambda x, p, n: multi_bandwidth_drift(operator, x, p, n, dense))(*stacked))
        except (RuntimeError, NotImplementedError, ValueError, TypeError) as err:  # e.g. .item() in the field
            log.info("%s: no batched field under torch.vmap (%s); one call per trial", operator, err)
            _NOT_BATCHED.add(key)
    with one_step():  # each trial's plans are chosen as they would be alone
        return [multi_bandwidth_drift(operator, x, p, n, field) for x, p, n in inputs]
