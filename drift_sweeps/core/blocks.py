"""The pair blocks the streaming passes visit: (samples x points) blocks of log k at each periodic image.

`pair_blocks` yields, one point block at a time, the blocks of log k(|b_j - a_i + 2 pi n|) + bias_j
(masked where a sample is the point itself), in scratch buffers sized to stay in cache on CPU
and to a share of free memory on a GPU (`block_shape`, `scratch`).  Squared distances come from
coordinate differences (torus, or dim <= _DIRECT_MAX_DIM) or from a matmul with near-coincident
pairs recomputed (`Layout`).  passes.py accumulates over these blocks.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from .field import FieldSpec
from .geometry import TWO_PI, image_offsets
from .kernels import Kernel

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
