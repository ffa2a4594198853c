"""Streaming drift operators: the N x M kernel matrix is visited one block at a time.

Every operator here reduces to a few *passes*.  A pass takes evaluation points `a` (Na, D)
and samples `b` (Nb, D) and, for each a_i, accumulates over all samples b_j and periodic
images n (one image on the plane) of

    e_ijn = exp(log k(|b_j - a_i + 2 pi n|) + bias_j - shift_i)

the sums  s_i = sum e,  disp_i = sum e w (b_j - a_i + 2 pi n)  (w = 1, or the gradient weight
-dlog(r)/r of the score and MMD operators), and optionally sum_i e per sample (column sums).
Blocks are (block_y samples) x (block_x points), sized from free memory; nothing larger is
allocated.  Softmax over (j, n) jointly is exactly the dense operators' "log-sum-exp over
images, then weight the images by their softmax" (operators.py), so the torus costs one
more loop, never an (N, M, I, D) tensor.

Shifts: a first pass shifts each point by the max of its log-kernel over the first block of
samples (minimum image), which for a point among its samples is within a few units of its
true max; Deng's first pass, which also needs column sums, uses one number for everyone.
Points whose shifted sums leave [exp(-30), inf) (a later block far closer than the first, or
every term underflowing) are redone with their exact max as shift (done only for those
points), so results equal the dense max-shifted softmax to float32 round-off.  Sinkhorn's and
Deng's later passes reuse known log-normalisers as shifts.  exp(L - shift) is computed as
exp2(L log2 e - shift log2 e) in one fused pass: torch's exp2 is about 2.4x cheaper than exp
on CPU, to the same ~1 ulp.  Accumulators are float64; the N x M work is in the input dtype.

Modules: blocks.py (the pair blocks and their scratch), passes.py (one pass, and the exact
redo), stream_sinkhorn.py (Sinkhorn's iterations); this one holds the operators.
"""

from __future__ import annotations

import torch

from . import nystrom as _nystrom
from . import passes
from .blocks import (CPU_BLOCK_ELEMS, Geometry, _DIRECT_MAX_DIM, block_shape, free_memory_bytes,  # noqa: F401
                     geometry, scratch)
from .field import FieldSpec, sum_over_scales
from .passes import (PassResult, _finite_or_zero, _ratio, log_sum, normalised_pass, normalised_pass_subset,  # noqa: F401
                     run_pass, unresolved)
from .stream_sinkhorn import sinkhorn


# ---------------------------------------------------------------- operators


def _side(x: torch.Tensor, y: torch.Tensor, geo: Geometry, mask: bool) -> torch.Tensor:
    """E_y[k (y-x)] / E_y[k], softmax over samples and images.  -> (N, D) float64."""
    res, _ = normalised_pass(x, y, geo, mask=mask, disp=True)
    return _ratio(res.disp, res.s)


def _per_side_single(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec, h: float) -> torch.Tensor:
    geo = geometry(field, h, x.shape[1])
    return (_side(x, pos, geo, False) - _side(x, neg, geo, field.neg_is_x)).to(x.dtype)


def _unnormalised_single(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec,
                         h: float) -> torch.Tensor:
    """E_p[k (y-x)] - E_q[k (y-x)], raw weights (k <= k(0) = 1 here: no shift needed, as mmd)."""
    geo = geometry(field, h, x.shape[1])
    n_neg = neg.shape[0] - (1 if field.neg_is_x else 0)
    gp = run_pass(x, pos, geo, disp=True).disp  # (N, D)
    gn = run_pass(x, neg, geo, mask=field.neg_is_x, disp=True).disp  # (N, D)
    return (gp / pos.shape[0] - gn / max(n_neg, 1)).to(x.dtype)


def _sharp_single(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec, h: float) -> torch.Tensor:
    """E_p[k (y-x)] / E_p[k#] - E_q[k (y-x)] / E_q[k#] (dense._sharp): a k-pass and a k#-pass per side."""
    geo = geometry(field, h, x.shape[1])
    geo_sharp = geometry(field, h, x.shape[1], field.kernel_entry.sharp_kernel())

    def side(y: torch.Tensor, mask: bool) -> torch.Tensor:
        res, used = normalised_pass(x, y, geo, mask=mask, disp=True)
        res_sharp, used_sharp = normalised_pass(x, y, geo_sharp, mask=mask)
        return _ratio(res.disp * torch.exp(used - used_sharp).unsqueeze(1), res_sharp.s)

    return (side(pos, False) - side(neg, field.neg_is_x)).to(x.dtype)


def meanshift(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Streaming mean-shift drift: softmax over samples and images, V = V+ - V- (or the field's
    `normalization`, as dense.meanshift).  -> (N, D)."""
    return NORMALISED[field.normalisation_or("per_side")](x, pos, neg, field, field.bandwidth)


def score(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Streaming h^2 (grad log p_h - grad log q_h), gradient in closed form from the kernel's dlog."""
    geo = geometry(field, field.bandwidth, x.shape[1])
    rp, _ = normalised_pass(x, pos, geo, disp=True, grad_weight=True)
    rn, _ = normalised_pass(x, neg, geo, mask=field.neg_is_x, disp=True, grad_weight=True)
    v = _ratio(rp.disp, rp.s) - _ratio(rn.disp, rn.s)  # (N, D)
    return (field.bandwidth**2 * v).to(x.dtype)


def mmd(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Streaming E_p[grad_x k] - E_q[grad_x k] (unnormalised, so no shift: k itself is summed)."""
    geo = geometry(field, field.bandwidth, x.shape[1])
    n_neg = neg.shape[0] - (1 if field.neg_is_x else 0)
    gp = run_pass(x, pos, geo, disp=True, grad_weight=True).disp  # (N, D)
    gn = run_pass(x, neg, geo, mask=field.neg_is_x, disp=True, grad_weight=True).disp  # (N, D)
    return (gp / pos.shape[0] - gn / max(n_neg, 1)).to(x.dtype)


def _deng_single(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec, h: float) -> torch.Tensor:
    """One bandwidth of Deng et al.'s joint row/column-normalised drift, in two passes."""
    geo = geometry(field, h, x.shape[1])
    mask = field.neg_is_x
    # pass 1: row normalisers R_i over pos and neg together, column normalisers C_j over x,
    # both from one exp per pair, so one shift for all (pos's first-block max; neg rescaled to it)
    rp = run_pass(x, pos, geo, sums_b=True, auto_shift="global")
    common = rp.shift[:1]  # (1,) float64
    rn = run_pass(x, neg, geo, mask=mask, sums_b=True, shift=common.expand(x.shape[0]))
    row_s = rp.s + rn.s  # (N,)
    row_shift = common.expand(x.shape[0]).clone()
    bad = unresolved(row_s)
    if bad.numel() > 0:
        sub = x[bad]
        sh = torch.maximum(passes.exact_shift(sub, pos, geo, False, bad, None),
                           passes.exact_shift(sub, neg, geo, mask, bad, None))
        s_p = run_pass(sub, pos, geo, a_ids=bad, shift=sh).s
        s_n = run_pass(sub, neg, geo, mask=mask, a_ids=bad, shift=sh).s
        row_s[bad] = s_p + s_n
        row_shift[bad] = sh.to(torch.float64)
    log_r = torch.log(row_s) + row_shift  # (N,)
    log_c_pos = _column_lse(pos, x, geo, False, rp.s_b, common)  # (M,)
    log_c_neg = _column_lse(neg, x, geo, mask, rn.s_b, common)  # (K,)
    # pass 2: a_ij = exp(L_ij - R_i/2 - C_j/2) <= 1, so no shift can fail
    half_r = 0.5 * _finite_or_zero(log_r)  # -inf only where every pair is masked
    tp = run_pass(x, pos, geo, shift=half_r, bias=-0.5 * _finite_or_zero(log_c_pos), disp=True)
    tn = run_pass(x, neg, geo, mask=mask, shift=half_r, bias=-0.5 * _finite_or_zero(log_c_neg), disp=True)
    v = tn.s.unsqueeze(1) * tp.disp - tp.s.unsqueeze(1) * tn.disp  # (N, D): W+ = A+ rowsum(A-), W- = A- rowsum(A+)
    return v.to(x.dtype)


def _column_lse(b: torch.Tensor, x: torch.Tensor, geo: Geometry, mask: bool, col_s: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
    """log sum_i k(x_i, b_j) from pass-1 column sums (taken with one scalar `shift`), exact where
    those under/overflowed.  -> (Nb,) float64."""
    out = torch.log(col_s) + shift  # (Nb,)
    bad = unresolved(col_s)
    if bad.numel() > 0:
        # the kernel is symmetric: the column of b_j is the row of b_j against the points x
        res, used = normalised_pass_subset(b[bad], x, geo, mask, bad)
        out[bad] = log_sum(res, used)
    return out



NORMALISED = {"per_side": _per_side_single, "joint": _deng_single, "none": _unnormalised_single,
              "sharp": _sharp_single}


def deng(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Streaming version of the original drifting paper's batch algorithm (dense.deng)."""
    return sum_over_scales(NORMALISED[field.normalisation_or("joint")], x, pos, neg, field)


def nystrom(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """The Nystrom drift (nystrom.py) with its exact parts streamed."""
    return _nystrom.drift(x, pos, neg, field, exact=meanshift,
                          side=lambda a, y, f, mask: _side(a, y, geometry(f, f.bandwidth, a.shape[1]), mask).to(a.dtype))



STREAM_IMPLEMENTATIONS = {
    "meanshift": meanshift,
    "deng": deng,
    "score": score,
    "mmd": mmd,
    "sinkhorn": sinkhorn,
    "nystrom": nystrom,
}
