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
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from . import nystrom as _nystrom
from .field import FieldSpec, sum_over_scales
from .geometry import TWO_PI, image_offsets
from .kernels import Kernel

_LOG2E = 1.0 / math.log(2.0)
_SMALL = math.exp(-30.0)  # shifted sums below this may have lost mass to underflow: redo exactly
_DIRECT_MAX_DIM = 8  # up to this dim, squared distances from coordinate differences; above, by matmul
_CLOSE_REL = 1e-2  # matmul distances: pairs closer than this share of |a|^2 + |b|^2 are recomputed
CPU_BLOCK_ELEMS = 1 << 18  # cache-sized blocks on CPU (1 MiB per float32 buffer)
_GPU_BLOCK_ELEMS_MAX = 1 << 27
_MEMORY_FRACTION = 0.25  # at most this share of free memory for block buffers


@dataclass(frozen=True)
class Geometry:
    """How one bandwidth's kernel is evaluated on one pair of point sets."""

    kernel: Kernel
    bandwidth: float
    dim: int
    periodic: bool
    offsets: tuple[tuple[float, ...], ...]  # periodic image offsets 2 pi n, (I, D); ((0,...),) on the plane
    block_x: int  # fixed by the field, or 0: chosen per pass from free memory
    block_y: int


def geometry(field: FieldSpec, bandwidth: float, dim: int, kernel: Optional[Kernel] = None) -> Geometry:
    """The Geometry of `field` (its kernel, or `kernel`) at `bandwidth` in `dim` dimensions."""
    shells = field.shells(bandwidth, dim)
    if field.periodic and shells > 0:
        rows = image_offsets(dim, shells).tolist()
        rows.sort(key=lambda r: sum(v * v for v in r))  # minimum image first (the auto shift reads it)
        offsets = tuple(tuple(float(v) for v in row) for row in rows)
    else:
        offsets = ((0.0,) * dim,)
    return Geometry(kernel or field.kernel_entry, bandwidth, dim, field.periodic, offsets, field.block_x, field.block_y)


def free_memory_bytes(device: torch.device) -> int:
    """Free memory on `device` (CUDA: the allocator's view; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def block_shape(n_a: int, n_b: int, n_buffers: int, device: torch.device, dtype: torch.dtype,
                block_x: int = 0, block_y: int = 0) -> tuple[int, int]:
    """(samples per block, points per block) for `n_buffers` scratch blocks.

    CPU: blocks of about CPU_BLOCK_ELEMS elements stay in cache; GPU: as large as a quarter of
    free memory allows (capped), so kernel launches are few.  Explicit sizes win.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    fit = int(_MEMORY_FRACTION * free_memory_bytes(device)) // (itemsize * max(n_buffers, 1))
    target = min(CPU_BLOCK_ELEMS if device.type == "cpu" else _GPU_BLOCK_ELEMS_MAX, max(fit, 1024))
    bx = block_x if block_x > 0 else min(n_a, 1024 if device.type == "cpu" else 8192)
    bx = max(1, min(bx, n_a))
    by = block_y if block_y > 0 else max(1, target // bx)
    return max(1, min(by, n_b)), bx


_WORKSPACE = threading.local()  # CPU scratch blocks reused across passes (fresh pages cost page faults)


def scratch(elems: int, count: int, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    """`count` flat scratch tensors of `elems` elements each.

    On CPU they come from a per-thread workspace kept between calls: freshly mapped pages of a
    new allocation fault on first touch, which cost as much as the arithmetic at trial sizes.
    Elsewhere (CUDA's caching allocator already reuses memory) they are allocated fresh.
    """
    if device.type != "cpu":
        return [torch.empty(elems, dtype=dtype, device=device) for _ in range(count)]
    pool = getattr(_WORKSPACE, "pool", None)
    if pool is None or pool.dtype != dtype or pool.numel() < elems * count:
        pool = torch.empty(elems * count, dtype=dtype)
        _WORKSPACE.pool = pool
    return [pool[k * elems : (k + 1) * elems] for k in range(count)]


@dataclass
class PassResult:
    """Accumulated sums of one pass (float64)."""

    s: torch.Tensor  # (Na,) sum_jn e
    disp: Optional[torch.Tensor]  # (Na, D) sum_jn e w d, or None
    s_b: Optional[torch.Tensor]  # (Nb,) sum_in e per sample, or None
    shift: Optional[torch.Tensor] = None  # (Na,) float64 shift used per point: log s + shift = LSE


@dataclass
class PairBlock:
    """log k + bias on one (samples x points) block at one periodic image, masked; the
    scratch views it lives in are overwritten by the next block."""

    j0: int
    j1: int
    off: tuple[float, ...]  # the image offset 2 pi n
    first: bool  # first block of samples at the minimum image (the auto shift reads it)
    logits: torch.Tensor  # (ny, nx)
    weight: Optional[torch.Tensor]  # (ny, nx) gradient weight -dlog(r)/r, when asked for
    disp: list[torch.Tensor]  # D x (ny, nx) minimum-image displacements b - a (kept layouts only)
    tmp: torch.Tensor  # (ny, nx) free scratch


@dataclass
class PointBlock:
    """Points a[i0:i1] and, on the plane, their coordinates centred on the block's mean."""

    i0: int
    i1: int
    a_c: Optional[torch.Tensor]  # (nx, D) plane: a - center
    b_c: Optional[torch.Tensor]  # (Nb, D) plane: b - center


class Layout:
    """How one pass computes squared distances, and which scratch blocks it needs.

    direct: from coordinate differences (torus, or dim <= _DIRECT_MAX_DIM), else by matmul.
    keep_d: per-pair displacements kept (D blocks): on the torus, and on the plane for the
    gradient weight, whose 1/r singularity (Laplacian) would make sum_j e w b_j - a sum_j e w
    cancel badly; otherwise the plane's displacement sums are one small matmul (plane_mm).
    """

    def __init__(self, periodic: bool, dim: int, disp: bool, grad_weight: bool):
        self.direct = periodic or dim <= _DIRECT_MAX_DIM
        self.keep_d = periodic or (self.direct and disp and grad_weight)
        self.plane_mm = disp and not self.keep_d
        self.n_buf = 2 + int(grad_weight) + (dim if self.keep_d else 0)


def pair_blocks(a: torch.Tensor, b: torch.Tensor, geo: Geometry, layout: Layout, *, mask: bool = False,
                a_ids: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
                grad_weight: bool = False) -> Iterator[tuple[PointBlock, Iterator[PairBlock]]]:
    """Every (point block, its pair blocks over samples and images) of `a` against `b`.

    mask: drop pairs with equal indices (b_j is a_i itself); a_ids (Na,) gives the indices of
    `a` when it is a subset (default 0..Na-1).  bias (Nb,) is added to log k.  Consume each
    point block's pair blocks before asking for the next point block (scratch is shared).
    """
    n_a, dim = a.shape
    n_b = b.shape[0]
    dev, dt = a.device, a.dtype
    by, bx = block_shape(n_a, n_b, layout.n_buf, dev, dt, geo.block_x, geo.block_y)
    bufs = scratch(by * bx, layout.n_buf, dev, dt)
    bias = None if bias is None else bias.to(dt)
    b_cols_periodic = [b[:, k].contiguous().unsqueeze(1) for k in range(dim)] if geo.periodic else []  # D x (Nb, 1)
    for i0 in range(0, n_a, bx):
        i1 = min(i0 + bx, n_a)
        if geo.periodic:
            a_blk = a[i0:i1]
            pb = PointBlock(i0, i1, None, None)
            a_rows = [a_blk[:, k].contiguous().unsqueeze(0) for k in range(dim)]  # D x (1, nx)
            b_cols = b_cols_periodic
        else:
            center = a[i0:i1].mean(0, keepdim=True)  # (1, D): keeps b.a cancellation small
            pb = PointBlock(i0, i1, a[i0:i1] - center, b - center)
            a_rows = [pb.a_c[:, k].contiguous().unsqueeze(0) for k in range(dim)]  # D x (1, nx)
            b_cols = [pb.b_c[:, k].contiguous().unsqueeze(1) for k in range(dim)] if layout.direct else []
        ids = None if a_ids is None else a_ids[i0:i1]
        yield pb, _sample_blocks(pb, a_rows, b_cols, geo, layout, bufs, by, n_b, ids, mask, bias, grad_weight)


def _sample_blocks(pb: PointBlock, a_rows: list[torch.Tensor], b_cols: list[torch.Tensor], geo: Geometry,
                   layout: Layout, bufs: list[torch.Tensor], by: int, n_b: int, ids: Optional[torch.Tensor],
                   mask: bool, bias: Optional[torch.Tensor], grad_weight: bool) -> Iterator[PairBlock]:
    """The pair blocks of one point block: samples in blocks of `by`, then every image."""
    nx, dim, dev = pb.i1 - pb.i0, len(a_rows), a_rows[0].device
    sq_buf, tmp_buf = bufs[0], bufs[1]
    w_buf = bufs[2] if grad_weight else None
    d_bufs = bufs[2 + int(grad_weight):]
    if not layout.direct:
        a_sq = pb.a_c.square().sum(1).unsqueeze(0)  # (1, nx)
        a_sq_max = a_sq.max()
        b_sq = pb.b_c.square().sum(1)  # (Nb,)
    for j0 in range(0, n_b, by):
        j1 = min(j0 + by, n_b)
        ny = j1 - j0
        sq = sq_buf[: ny * nx].view(ny, nx)
        tmp = tmp_buf[: ny * nx].view(ny, nx)
        ds: list[torch.Tensor] = []
        if layout.keep_d:
            ds = [buf[: ny * nx].view(ny, nx) for buf in d_bufs]
            for k in range(dim):
                torch.sub(b_cols[k][j0:j1], a_rows[k], out=ds[k])  # (ny, nx)
                if geo.periodic:
                    torch.div(ds[k], TWO_PI, out=tmp).round_()
                    ds[k].sub_(tmp, alpha=TWO_PI)  # minimum image, as geometry.displacement
        elif not layout.direct:
            _matmul_sq(pb, sq, j0, j1, a_sq, a_sq_max, b_sq)
        bias_col = None if bias is None else bias[j0:j1].unsqueeze(1)  # (ny, 1)
        diag = _diagonal_hits(ids, pb.i0, nx, j0, ny, dev) if mask else None
        for off in geo.offsets:
            if layout.keep_d:
                _sq_from_displacements(ds, off, sq, tmp)
            elif layout.direct:
                for k in range(dim):
                    torch.sub(b_cols[k][j0:j1], a_rows[k], out=tmp)  # (ny, nx)
                    if k == 0:
                        torch.mul(tmp, tmp, out=sq)
                    else:
                        sq.addcmul_(tmp, tmp)
            wgt = None
            if grad_weight:
                wgt = geo.kernel.weight_from_sq_(w_buf[: ny * nx].view(ny, nx).copy_(sq), geo.bandwidth, dim)
            logits = geo.kernel.log_from_sq_(sq, geo.bandwidth, dim)  # (ny, nx), usually sq itself
            if bias_col is not None:
                logits.add_(bias_col)
            if diag is not None:
                logits[diag] = -math.inf
            yield PairBlock(j0, j1, off, j0 == 0 and off is geo.offsets[0], logits, wgt, ds, tmp)


def _matmul_sq(pb: PointBlock, sq: torch.Tensor, j0: int, j1: int, a_sq: torch.Tensor, a_sq_max: torch.Tensor,
               b_sq: torch.Tensor) -> None:
    """Squared distances |a|^2 + |b|^2 - 2 a.b into sq (ny, nx); near-coincident pairs, whose
    digits that formula cancels away, recomputed exactly."""
    torch.addmm(b_sq[j0:j1].unsqueeze(1), pb.b_c[j0:j1], pb.a_c.T, alpha=-2.0, out=sq)  # (ny, nx)
    sq.add_(a_sq).clamp_(min=0.0)
    close = torch.nonzero(sq < _CLOSE_REL * (a_sq_max + b_sq[j0:j1].max()))  # (C, 2)
    if close.numel() > 0:
        r, c = close.unbind(1)
        sq[r, c] = (pb.b_c[j0 + r] - pb.a_c[c]).square().sum(1)


def _sq_from_displacements(ds: list[torch.Tensor], off: tuple[float, ...], sq: torch.Tensor, tmp: torch.Tensor) -> None:
    """|d + off|^2 into sq from the kept per-dimension displacements."""
    for k, d in enumerate(ds):
        src = d if off[k] == 0.0 else torch.add(d, off[k], out=tmp)  # (ny, nx)
        if k == 0:
            torch.mul(src, src, out=sq)
        else:
            sq.addcmul_(src, src)


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


def logit_matrix(a: torch.Tensor, b: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """log k summed over periodic images (as dense._logk), transposed.  -> (Nb, Na)."""
    out = torch.empty(b.shape[0], a.shape[0], dtype=a.dtype, device=a.device)
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


def _diagonal_hits(ids: Optional[torch.Tensor], i0: int, nx: int, j0: int, ny: int, dev: torch.device):
    """Positions (row, col) in a (ny, nx) block where sample index == point index, or None."""
    if ids is None:
        lo, hi = max(i0, j0), min(i0 + nx, j0 + ny)
        if lo >= hi:
            return None
        idx = torch.arange(lo, hi, device=dev)
        return idx - j0, idx - i0
    rows = ids - j0
    hit = (rows >= 0) & (rows < ny)
    if not bool(hit.any()):
        return None
    cols = torch.nonzero(hit).squeeze(1)
    return rows[cols], cols


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
        sh = torch.maximum(exact_shift(sub, pos, geo, False, bad, None), exact_shift(sub, neg, geo, mask, bad, None))
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


def normalised_pass_subset(a: torch.Tensor, b: torch.Tensor, geo: Geometry, mask: bool, a_ids: torch.Tensor,
                           disp: bool = False, grad_weight: bool = False) -> tuple[PassResult, torch.Tensor]:
    """Exact (max-shifted) sums for a subset `a` (indices a_ids) against all of `b`."""
    sh = exact_shift(a, b, geo, mask, a_ids, None)
    res = run_pass(a, b, geo, mask=mask, a_ids=a_ids, shift=sh, disp=disp, grad_weight=grad_weight)
    return res, sh.to(torch.float64)


# normalization -> the one-bandwidth field, as dense.NORMALISED
NORMALISED = {"per_side": _per_side_single, "joint": _deng_single, "none": _unnormalised_single,
              "sharp": _sharp_single}


def deng(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Streaming version of the original drifting paper's batch algorithm (dense.deng)."""
    return sum_over_scales(NORMALISED[field.normalisation_or("joint")], x, pos, neg, field)


def nystrom(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """The Nystrom drift (nystrom.py) with its exact parts streamed."""
    return _nystrom.drift(x, pos, neg, field, exact=meanshift,
                          side=lambda a, y, f, mask: _side(a, y, geometry(f, f.bandwidth, a.shape[1]), mask).to(a.dtype))


def _sinkhorn_side(x: torch.Tensor, y: torch.Tensor, geo: Geometry, iters: int) -> torch.Tensor:
    """Barycentric displacement sum_j pi(j|i) (y_j - x_i) of entropic OT, log-domain Sinkhorn.

    Same iteration as dense.sinkhorn_conditional; each iteration is a row pass and a column
    pass, each shifted by the previous iteration's log-normalisers.  When the (M, N) log-kernel
    fits in SINKHORN_CACHE_BYTES it is computed once and kept (no distances, kernels or
    periodic images re-evaluated 2 * iters times); otherwise every pass streams.  The final
    pass, which needs per-image displacements, always streams.  -> (N, D) float64.
    """
    n, m = x.shape[0], y.shape[0]
    log_a, log_b = -math.log(n), -math.log(m)
    g = torch.zeros(m, dtype=torch.float64, device=x.device)  # (M,)
    row_shift: Optional[torch.Tensor] = None
    col_shift: Optional[torch.Tensor] = None
    cached = iters > 0 and n * m * x.element_size() <= sinkhorn_cache_bytes(x.device)
    logits = logit_matrix(x, y, geo).mul_(_LOG2E) if cached else None  # (M, N), base-2 units
    for _ in range(iters):
        if logits is not None:
            row_lse = _cached_lse(logits, g, row_shift, over_samples=True)  # (N,)
        else:
            res, used = normalised_pass(x, y, geo, shift=row_shift, bias=g)
            row_lse = log_sum(res, used)  # (N,)
        f = -row_lse - log_b
        if logits is not None:
            col_lse = _cached_lse(logits, f, col_shift, over_samples=False)  # (M,)
        else:
            res, used = normalised_pass(y, x, geo, shift=col_shift, bias=f)
            col_lse = log_sum(res, used)  # (M,)
        g = -col_lse - log_a
        row_shift, col_shift = row_lse, col_lse
    res, _ = normalised_pass(x, y, geo, shift=row_shift, bias=g, disp=True)
    return _ratio(res.disp, res.s)


SINKHORN_CACHE_BYTES = 64 << 20  # keep Sinkhorn's log-kernel matrix when it is at most this big


def sinkhorn_cache_bytes(device: torch.device) -> int:
    """Largest log-kernel matrix Sinkhorn keeps across iterations on `device`."""
    return min(SINKHORN_CACHE_BYTES, int(_MEMORY_FRACTION * free_memory_bytes(device)))


def _cached_lse(logits: torch.Tensor, bias: torch.Tensor, shift: Optional[torch.Tensor],
                over_samples: bool) -> torch.Tensor:
    """log-sum-exp of L + bias, L = logits / log2(e) (Nb, Na), over samples or over points.

    `logits` are in base-2 units (exp2 is the cheap exponential); bias, shift and the result in
    natural units.  over_samples: bias (Nb,), result (Na,) = LSE_j(L_ji + bias_j); else bias
    (Na,), result (Nb,) = LSE_i(L_ji + bias_i).  `shift` (the previous result) keeps the
    exponentials in range; entries whose shifted sum under/overflows are redone exactly.
    -> float64.
    """
    n_b, n_a = logits.shape
    dt = logits.dtype
    bias_t = (bias * _LOG2E).to(dt)
    sh = None if shift is None else (shift * _LOG2E).to(dt)
    s = torch.zeros(n_a if over_samples else n_b, dtype=torch.float64, device=logits.device)
    rows = max(1, CPU_BLOCK_ELEMS // max(n_a, 1))
    buf = torch.empty(min(rows, n_b) * n_a, dtype=dt, device=logits.device)
    for j0 in range(0, n_b, rows):
        j1 = min(j0 + rows, n_b)
        blk = buf[: (j1 - j0) * n_a].view(j1 - j0, n_a)
        if over_samples:
            torch.add(logits[j0:j1], bias_t[j0:j1].unsqueeze(1), out=blk)  # (ny, Na)
            if sh is not None:
                blk.sub_(sh.unsqueeze(0))
            s += blk.exp2_().sum(0)
        else:
            torch.add(logits[j0:j1], bias_t.unsqueeze(0), out=blk)  # (ny, Na)
            if sh is not None:
                blk.sub_(sh[j0:j1].unsqueeze(1))
            s[j0:j1] = blk.exp2_().sum(1)
    out = torch.log(s) + (0.0 if shift is None else shift.to(torch.float64))
    bad = unresolved(s)
    if bad.numel() > 0:
        if over_samples:
            z2 = logits[:, bad].to(torch.float64) + bias_t.unsqueeze(1).to(torch.float64)  # (Nb, B), base 2
            exact = torch.logsumexp(z2 / _LOG2E, dim=0)  # (B,)
        else:
            z2 = logits[bad].to(torch.float64) + bias_t.unsqueeze(0).to(torch.float64)  # (B, Na), base 2
            exact = torch.logsumexp(z2 / _LOG2E, dim=1)  # (B,)
        out[bad] = exact
    return out


def sinkhorn(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Streaming Sinkhorn-divergence drift T_{q->p}(x) - T_{q->q}(x) (no self-pair mask)."""
    geo = geometry(field, field.bandwidth, x.shape[1])
    v = _sinkhorn_side(x, pos, geo, field.sinkhorn_iters) - _sinkhorn_side(x, neg, geo, field.sinkhorn_iters)
    return v.to(x.dtype)


STREAM_IMPLEMENTATIONS = {
    "meanshift": meanshift,
    "deng": deng,
    "score": score,
    "mmd": mmd,
    "sinkhorn": sinkhorn,
    "nystrom": nystrom,
}
