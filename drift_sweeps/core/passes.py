"""Streaming passes: sums over samples and images of exp(log k + bias - shift), one block at a time.

A pass of points a against samples b accumulates s_i = sum e, disp_i = sum e w (b_j - a_i + 2 pi n)
and optionally per-sample column sums (streaming.py's docstring has the whole scheme); sums that
leave [exp(-30), inf) are redone with each point's exact max as shift (`normalised_pass`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from . import plane_loop
from .blocks import Geometry, Layout, PairBlock, PointBlock, pair_blocks

_LOG2E = 1.0 / math.log(2.0)
_SMALL = math.exp(-30.0)  # shifted sums below this may have lost mass to underflow: redo exactly


@dataclass
class PassResult:
    """Accumulated sums of one pass (float64)."""

    s: torch.Tensor  # (Na,) sum_jn e
    disp: Optional[torch.Tensor]  # (Na, D) sum_jn e w d, or None
    s_b: Optional[torch.Tensor]  # (Nb,) sum_in e per sample, or None
    shift: Optional[torch.Tensor] = None  # (Na,) float64 shift used per point: log s + shift = LSE



def max_pass(a: torch.Tensor, b: torch.Tensor, geo: Geometry, *, mask: bool = False,
             a_ids: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """max over samples and images of log k + bias per point (-inf where all are masked).  -> (Na,)."""
    layout = Layout(geo.periodic, a.shape[1], False, False)
    out = torch.full((a.shape[0],), -math.inf, dtype=a.dtype, device=a.device)
    for pb, blocks in pair_blocks(a, b, geo, layout, mask=mask, a_ids=a_ids, bias=bias):
        run_max = out[pb.i0 : pb.i1]
        for blk in blocks:
            torch.maximum(run_max, blk.logits.amax(0), out=run_max)
    return out


def logit_matrix(a: torch.Tensor, b: torch.Tensor, geo: Geometry, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """log k summed over periodic images (as dense._logk), transposed, into `out` when given.  -> (Nb, Na)."""
    out = torch.empty(b.shape[0], a.shape[0], dtype=a.dtype, device=a.device) if out is None else out
    layout = Layout(geo.periodic, a.shape[1], False, False)
    for pb, blocks in pair_blocks(a, b, geo, layout):
        for blk in blocks:
            out_blk = out[blk.j0 : blk.j1, pb.i0 : pb.i1]  # (ny, nx)
            if blk.off is geo.offsets[0]:
                out_blk.copy_(blk.logits)
            else:
                torch.logaddexp(out_blk, blk.logits, out=out_blk)
    return out


def run_pass(
    a: torch.Tensor,
    b: torch.Tensor,
    geo: Geometry,
    *,
    mask: bool = False,
    a_ids: Optional[torch.Tensor] = None,
    shift: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    disp: bool = False,
    grad_weight: bool = False,
    sums_b: bool = False,
    auto_shift: str = "none",
) -> PassResult:
    """One streaming pass of `a` (Na, D) against `b` (Nb, D): the sums of the module docstring.

    shift (Na,): log-space offset per point.  grad_weight: weight the displacement by
    -dlog(r)/r (score, MMD).  sums_b: also the column sums per sample.  auto_shift (when no
    shift is given): "none" exponentiates log k + bias as is (absolute sums); "point" shifts
    each point by its max over the first block of samples; "global" by one number, the max
    over the first block, so that column sums (sums_b) stay consistent.
    """
    if auto_shift not in ("none", "point", "global"):
        raise ValueError(f"auto_shift {auto_shift!r}; allowed: none, point, global")
    n_a, dim = a.shape
    dev, dt, f64 = a.device, a.dtype, torch.float64
    weight_const = 1.0  # a constant gradient weight (Gaussian: 1/h^2) multiplies the sums at the end
    if grad_weight:
        probe = geo.kernel.weight_from_sq_(torch.ones(1, dtype=dt, device=dev), geo.bandwidth, dim)
        if isinstance(probe, float):
            weight_const, grad_weight = probe, False
    if ((shift is not None or (auto_shift in ("point", "none") and bias is None)) and not sums_b
            and plane_loop.usable(a, b, geo)):  # one compiled loop, each pair once
        if shift is None and auto_shift == "none":  # absolute sums
            shift = torch.zeros(n_a, dtype=torch.float64)
        s, d, sh = plane_loop.plane_sums(a, b, geo.kernel, geo.bandwidth, mask, a_ids, bias, shift, grad_weight)
        return PassResult(s=s, disp=(d * weight_const) if disp else None, s_b=None, shift=sh)
    layout = Layout(geo.periodic, dim, disp, grad_weight)
    out = PassResult(
        s=torch.zeros(n_a, dtype=f64, device=dev),
        disp=torch.zeros(n_a, dim, dtype=f64, device=dev) if disp else None,
        s_b=torch.zeros(b.shape[0], dtype=f64, device=dev) if sums_b else None,
        shift=torch.zeros(n_a, dtype=f64, device=dev) if shift is None else shift.to(f64),
    )
    acc = _Accumulator(out, b, shift=None if shift is None else shift.to(dt),
                       auto="none" if shift is not None else auto_shift, layout=layout, weighted=grad_weight)
    for pb, blocks in pair_blocks(a, b, geo, layout, mask=mask, a_ids=a_ids, bias=bias, grad_weight=grad_weight):
        acc.start(pb)
        for blk in blocks:
            acc.add(blk)
        acc.finish()
    if out.disp is not None and weight_const != 1.0:
        out.disp *= weight_const
    return out


class _Accumulator:
    """The sums of `run_pass`, one point block at a time: e = exp(log k + bias - shift)."""

    def __init__(self, out: PassResult, b: torch.Tensor, shift: Optional[torch.Tensor], auto: str, layout: Layout,
                 weighted: bool):
        self.out, self.shift, self.auto, self.layout = out, shift, auto, layout
        self.dim, self.weighted = b.shape[1], weighted
        # plane_mm without a weight: the matmul's ones row already sums e
        self.s_from_mm = layout.plane_mm and not weighted
        self.global_shift: Optional[torch.Tensor] = None
        self.b = b

    def start(self, pb: PointBlock) -> None:
        """Fresh per-point accumulators for the points of `pb`."""
        self.pb = pb
        nx, dev = pb.i1 - pb.i0, self.out.s.device
        f64, dt = torch.float64, self.b.dtype
        self.s_acc = torch.zeros(nx, dtype=f64, device=dev)
        self.d_acc = torch.zeros(self.dim, nx, dtype=f64, device=dev) if (self.out.disp is not None
                                                                           and self.layout.keep_d) else None
        self.neg_sh2 = None if self.shift is None else (self.shift[pb.i0 : pb.i1] * -_LOG2E).unsqueeze(0)  # (1, nx)
        if self.layout.plane_mm:
            ones = torch.ones(1, self.b.shape[0], dtype=dt, device=dev)
            self.b1t = torch.cat([pb.b_c.T, ones], 0)  # (D+1, Nb)
            self.acc_mm = torch.zeros(self.dim + 1, nx, dtype=f64, device=dev)  # sum e w [b_c; 1]
            self.blk_mm = torch.empty(self.dim + 1, nx, dtype=dt, device=dev)

    def add(self, blk: PairBlock) -> None:
        """Exponentiate one pair block and add it to the sums."""
        if self.auto != "none" and blk.first:
            self._take_shift(blk.logits)
        # exp(L - shift) computed as exp2(L log2 e - shift log2 e): one fused pass, and torch's
        # exp2 is ~2.4x cheaper than exp on CPU (both ~1 ulp)
        if self.neg_sh2 is not None:
            torch.add(self.neg_sh2, blk.logits, alpha=_LOG2E, out=blk.logits)
        else:
            blk.logits.mul_(_LOG2E)
        e = blk.logits.exp2_()  # (ny, nx)
        if self.out.s_b is not None:
            self.out.s_b[blk.j0 : blk.j1] += e.sum(1)
        ew = e if blk.weight is None else blk.weight.mul_(e)
        if not self.s_from_mm:
            self.s_acc += e.sum(0)
        if self.layout.plane_mm:
            torch.mm(self.b1t[:, blk.j0 : blk.j1], ew, out=self.blk_mm)  # (D+1, nx)
            self.acc_mm += self.blk_mm
        elif self.d_acc is not None:
            ew_sum = None
            for k in range(self.dim):
                self.d_acc[k] += torch.mul(ew, blk.disp[k], out=blk.tmp).sum(0)
                if blk.off[k] != 0.0:
                    ew_sum = ew.sum(0) if ew_sum is None else ew_sum
                    self.d_acc[k] += blk.off[k] * ew_sum

    def _take_shift(self, logits: torch.Tensor) -> None:
        """The first block at the minimum image: its max is close to each point's true max."""
        if self.auto == "point":
            sh = _finite_or_zero(logits.amax(0)).unsqueeze(0)  # (1, nx)
        else:
            if self.global_shift is None:
                self.global_shift = _finite_or_zero(logits.max())
            sh = self.global_shift
        self.out.shift[self.pb.i0 : self.pb.i1] = sh.to(torch.float64)
        self.neg_sh2 = sh * -_LOG2E

    def finish(self) -> None:
        """Write the point block's sums into the result."""
        i0, i1 = self.pb.i0, self.pb.i1
        if self.layout.plane_mm:
            if self.s_from_mm:
                self.s_acc = self.acc_mm[self.dim].clone()
            a_c = self.pb.a_c.to(torch.float64)
            self.out.disp[i0:i1] = self.acc_mm[: self.dim].T - a_c * self.acc_mm[self.dim].unsqueeze(1)  # sum e w (b - a)
        elif self.d_acc is not None:
            self.out.disp[i0:i1] = self.d_acc.T
        self.out.s[i0:i1] = self.s_acc



def unresolved(s: torch.Tensor, disp: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Indices whose shifted sums left [exp(-30), inf) (or whose displacement sums are not
    finite): they may have lost mass to under- or overflow and are redone exactly.  -> (B,)."""
    ok = torch.isfinite(s) & (s >= _SMALL)
    if disp is not None:
        ok &= torch.isfinite(disp).all(1)
    return torch.nonzero(~ok).squeeze(1)


def exact_shift(a: torch.Tensor, b: torch.Tensor, geo: Geometry, mask: bool, a_ids: Optional[torch.Tensor],
                bias: Optional[torch.Tensor]) -> torch.Tensor:
    """max_jn (log k + bias) per point (0 where every pair is masked).  -> (Na,)."""
    mx = max_pass(a, b, geo, mask=mask, a_ids=a_ids, bias=bias)  # (Na,)
    return torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))


def normalised_pass(
    a: torch.Tensor,
    b: torch.Tensor,
    geo: Geometry,
    *,
    mask: bool = False,
    shift: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    disp: bool = False,
    grad_weight: bool = False,
) -> tuple[PassResult, torch.Tensor]:
    """A pass whose sums are safe to normalise: failed points redone with their exact shift.

    Returns the result and the shift used per point (float64), so log s + shift is the exact
    log-sum-exp of log k + bias over samples and images.
    """
    res = run_pass(a, b, geo, mask=mask, shift=shift, bias=bias, disp=disp, grad_weight=grad_weight,
                   auto_shift="point")
    used = res.shift
    bad = unresolved(res.s, res.disp)
    if bad.numel() > 0:
        sub = a[bad]
        sh = exact_shift(sub, b, geo, mask, bad, bias)
        redo = run_pass(sub, b, geo, mask=mask, a_ids=bad, shift=sh, bias=bias, disp=disp, grad_weight=grad_weight)
        res.s[bad] = redo.s
        if disp:
            res.disp[bad] = redo.disp
        used[bad] = sh.to(torch.float64)
    return res, used


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den per row, 0 where den == 0 (every pair masked).  (N, D), (N,) -> (N, D)."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where((den > 0).unsqueeze(1), num / safe.unsqueeze(1), torch.zeros_like(num))


def _finite_or_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def log_sum(res: PassResult, used: torch.Tensor) -> torch.Tensor:
    """log-sum-exp from a normalised pass (-inf where everything was masked).  -> (Na,) float64."""
    return torch.log(res.s) + used



def normalised_pass_subset(a: torch.Tensor, b: torch.Tensor, geo: Geometry, mask: bool, a_ids: torch.Tensor,
                           disp: bool = False, grad_weight: bool = False) -> tuple[PassResult, torch.Tensor]:
    """Exact (max-shifted) sums for a subset `a` (indices a_ids) against all of `b`."""
    sh = exact_shift(a, b, geo, mask, a_ids, None)
    res = run_pass(a, b, geo, mask=mask, a_ids=a_ids, shift=sh, disp=disp, grad_weight=grad_weight)
    return res, sh.to(torch.float64)


# normalization -> the one-bandwidth field, as dense.NORMALISED
