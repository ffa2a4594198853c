"""The Ewald near field on the torus: sums of k chi over pairs closer than r_c, by a cell list.

    S(x_i) = sum_j k chi(r_ij),   G(x_i) = sum_j k chi (y_j - x_i)  (moment)
                                        or  sum_j d(k chi)/dr (x_i - y_j) / r_ij  (gradient)

over the pairs with r_ij = |x_i - y_j| < r_c = CUTOFF a (minimum image: r_c < pi), with
chi(r) = exp(-(r / a)^CHI_POWER) (spectral.py's Ewald split).  Two implementations:

- `near_sums_torch`: the reference, torch operations on gathered candidate pairs (about 1e-7 s
  per candidate pair: a dozen passes over each chunk);
- a compiled loop (numba, `_near_loop`) for the kernels in `COMPILED_KERNELS`, one pass over the
  candidates of each point with the kernel written out, the samples in strips sorted along axis 0 so a point
  reads only the disc's chord of each strip (`StripLayout`): per segment one branch-free loop
  (pairs beyond r_c and the self pair masked, exp written as a polynomial: `_exp_neg`) that LLVM
  vectorises, about 30x fewer seconds per candidate pair than the torch path; a large call's points
  are split into ranges run at once on torch's thread count (`thread_parts`).

`near_sums` takes the compiled loop when numba imports and the kernel has a compiled form, else
the torch one; tests/core/test_near.py holds the two to 1e-12 of each other.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .geometry import TWO_PI, minimum_image
from .kernels import KERNELS

CHI_POWER = 8  # chi(r) = exp(-(r/a)^CHI_POWER)
CUTOFF = 1.6  # near field summed for r < CUTOFF * a (chi = exp(-1.6^8) = 2e-19 there)
NEAR_THREAD_PAIRS = 1 << 18  # compiled loop: one range of points per thread (torch's count) and this many
# candidate pairs (about 1 ms of work against ~0.1 ms to hand a range to a thread)
SORT_POINTS = 1 << 14  # compiled loop: points visited in the samples' strip order from this many points on (the samples
# a point reads then stay in cache for the next)
SELF_ONCE = True  # compiled loop: a set that is the points themselves reads each pair once (both ends' terms),
SELF_ONCE_SHARE = 0.7  # at about this share of the time reading it from both ends takes (0.65-0.77 measured, 2-D,
# 4096-262144 points, a = 0.11-0.67: half the pairs, each with its far end's four loads and stores)
NEAR_CHUNK_PAIRS = 1 << 18  # torch path: candidate pairs per chunk (2 MiB per float64 column: cache-sized)
# kernel name -> code of its closed form in `_near_loop` (log k and d log k / dr at (r, h, dim))
COMPILED_KERNELS = {"gaussian": 0, "laplacian": 1, "cauchy": 2, "matern32": 3, "matern52": 4}
_LOG2E = 1.0 / math.log(2.0)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 in two parts (fdlibm's)
_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(13))  # 1/0!, ..., 1/12!: exp's polynomial


def near_sums(x: torch.Tensor, y: torch.Tensor, kernel: str, h: float, a: float, moment: bool,
              self_pairs: bool, compiled: Optional[bool] = None,
              r_c: Optional[float] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Near-field sums S (N,) and G (N, D) of y at x (float64, in [0, 2pi)); self_pairs: y is x,
    the pair j = i left out.  compiled: None takes the compiled loop where it exists.  a = inf is
    chi = 1 (the whole kernel, the near-only plan), summed within r_c (default CUTOFF a, at most pi)."""
    usable = compiled is not False and kernel in COMPILED_KERNELS and compiled_available()
    if compiled and not usable:
        raise ValueError(f"no compiled near field for kernel {kernel!r} (numba installed: {compiled_available()})")
    if not usable:
        return near_sums_torch(x, y, kernel, h, a, moment, self_pairs, r_c)
    r_c = CUTOFF * a if r_c is None else r_c
    grid = StripList(y, r_c)
    loop = _compiled_loop(COMPILED_KERNELS[kernel], grid.layout.wrap, bool(moment))
    n, dim = x.shape
    s_out = torch.zeros(n, dtype=torch.float64)
    g_out = torch.zeros(n, dim, dtype=torch.float64)
    ys3 = torch.zeros(3, grid.ys.shape[0], dtype=torch.float64)  # (3, M): padded, so the pair loop has no D branch
    ys3[:dim] = grid.ys.T
    slot = torch.empty_like(grid.order)
    slot[grid.order] = torch.arange(grid.order.shape[0])  # sample i's place in the sorted samples
    consts = torch.tensor([r_c * r_c, 1.0 / (a * a), 1.0 / h, 1.0 / (h * h)], dtype=torch.float64)
    lay = grid.layout
    half = bool(self_pairs) and SELF_ONCE
    own_slot = slot
    visit = grid.sorted_order(x) if n >= SORT_POINTS else None  # neighbouring points read neighbouring samples
    if visit is not None:
        x, slot = x[visit], (slot[visit] if self_pairs else slot)
    parts = thread_parts(n, lay.candidates / (2 if half else 1), torch.get_num_threads())
    acc = torch.zeros(parts, 4, grid.ys.shape[0] if half else 1, dtype=torch.float64)  # a thread's samples' shares
    args = (x.contiguous().numpy(), ys3.numpy(), slot.numpy(), grid.starts.numpy(), grid.counts.numpy(),
            lay.strips, 2 * lay.fine + 1, lay.side, consts.numpy(), 2 if half else int(self_pairs), s_out.numpy(),
            g_out.numpy())
    bounds = [n * p // parts for p in range(parts + 1)]
    if parts == 1:
        loop(*args, acc[0].numpy(), 0, n)
    else:  # the loop releases the GIL: disjoint ranges of points on a trial's threads
        list(_pool(parts).map(lambda p: loop(*args, acc[p].numpy(), bounds[p], bounds[p + 1]), range(parts)))
    if visit is not None:
        s_out[visit], g_out[visit] = s_out.clone(), g_out.clone()
    if half:  # each point's share of the pairs read from the other end
        shares = acc.sum(0)[:, own_slot]
        s_out += shares[0]
        g_out += shares[1 : 1 + dim].T
    return s_out, g_out


def thread_parts(n: int, candidates: float, threads: int) -> int:
    """How many ranges of points the compiled loop runs at once: one per thread, each with at least
    NEAR_THREAD_PAIRS candidate pairs (candidates: per point, `StripLayout.candidates`)."""
    return max(1, min(threads, int(n * candidates // NEAR_THREAD_PAIRS)))


@dataclass(frozen=True)
class StripLayout:
    """How the compiled loop finds a point's candidates: the samples sorted into strips along axes 1..D-1 (each
    strip sorted by its axis-0 coordinate); a point reads the strips of its (2 fine + 1)^(D-1) block that come
    closer than r_c, and in each only the samples within the axis-0 half-width that leaves (two binary
    searches).  In 2-D that is about 3.6 r_c^2 of candidates per point at fine = 4 (5.1 r_c^2 at fine = 1),
    against 6.25 r_c^2 for a 5 x 5 block of cells of side r_c / 2.  wrap: one strip and every pair's minimum
    image (an r_c too large for a block of distinct strips)."""

    strips: int  # per axis 1..D-1 (1 in 1-D and when wrap)
    fine: int  # strips per r_c, rounded up: the block's half-width
    side: float  # a strip's width, 2 pi / strips >= r_c / fine
    wrap: bool
    candidates: float  # expected candidate pairs per point (uniform samples)
    rows: float  # expected strips read per point

    @property
    def pairs(self) -> float:
        """A point's cost in candidate pairs' worth: its candidates, its strip reads and its own entry."""
        return self.candidates + ROW_PAIRS * self.rows + POINT_PAIRS


FINE_CHOICES = (0, 1, 2, 3, 4, 6, 8, 12, 16)  # the layouts priced (0: one strip, every pair's minimum image)
ROW_PAIRS = 30.0  # compiled loop: one strip read (its two binary searches, segments, entry and exit) costs about as
POINT_PAIRS = 160.0  # much as this many candidate pairs, and a point's own entry (its block, its sums) this many:
# least squares over 2-D layouts fine 1-16 at 4096 and 65536 points (105 ns a read, 540 ns a point, 3.4 ns a pair)


@functools.lru_cache(maxsize=4096)
def strip_layout(r_c: float, m: int, dim: int) -> StripLayout:
    """The cheapest layout in FINE_CHOICES for m uniform samples (StripLayout.pairs);
    one strip with every pair's minimum image where no block of distinct strips fits."""
    if dim == 1:  # one strip: the samples sorted, a point reads x +- r_c (r_c <= pi: two ranges at most)
        return StripLayout(1, 0, TWO_PI, False, m * min(1.0, r_c / math.pi), 1.0)
    wrap = StripLayout(1, 0, TWO_PI, True, float(m), 1.0)
    best, best_cost = None, math.inf
    for fine in FINE_CHOICES:
        strips = int(TWO_PI * fine / r_c)
        if fine == 0:
            lay = wrap
        elif strips >= 2 * fine + 1:
            side = TWO_PI / strips
            volume, rows = _strip_volume(dim, fine, r_c / side)
            lay = StripLayout(strips, fine, side, False, m * volume * side**dim / TWO_PI**dim, rows)
        else:
            continue
        if lay.pairs < best_cost:
            best, best_cost = lay, lay.pairs
    return best or wrap


@functools.lru_cache(maxsize=4096)
def _strip_volume(dim: int, fine: int, rho: float, grid: int = 16) -> tuple[float, float]:
    """Expected candidate volume (units of a strip's side^D) and strips read per point, r_c = rho sides,
    a point's place in its strip on a grid of `grid` positions per axis."""
    f = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    off = torch.arange(-fine, fine + 1, dtype=torch.float64)
    gap2 = ((off - f[:, None]).clamp_min(0) + (f[:, None] - off - 1).clamp_min(0)).square()  # (grid, 2 fine + 1)
    total = gap2
    for _ in range(dim - 2):
        total = (total[:, None, :, None] + gap2[None, :, None, :]).reshape(total.shape[0] * grid, -1)
    inside = total < rho * rho
    width = 2.0 * (rho * rho - total).clamp_min(0).sqrt()
    return float(width.sum(1).mean()), float(inside.sum(1).double().mean())


def cell_layout(r_c: float) -> tuple[int, int]:
    """The torch reference's cells: (cells per dimension, span of the neighbour block): cells of side >= r_c / 2
    and the 5^D block around a point's cell where at least 5 fit, else one cell (every sample, minimum image)."""
    cells = int(TWO_PI / (0.5 * r_c))
    return (cells, 5) if cells >= 5 else (1, 1)


class CellList:
    """Samples sorted by cell (`cell_layout`): every sample closer than r_c to a point lies in the
    span^D block of cells around the point's cell."""

    def __init__(self, y: torch.Tensor, r_c: float):
        dim = y.shape[1]
        self.cells, self.span = cell_layout(r_c)
        self.side = TWO_PI / self.cells
        self.weights = torch.tensor([self.cells**d for d in range(dim)])
        cid = self.cell_ids(y)
        self.order = torch.argsort(cid)
        self.ys = y[self.order].contiguous()  # (M, D)
        self.counts = torch.bincount(cid, minlength=self.cells**dim)
        self.starts = self.counts.cumsum(0) - self.counts

    def cell_coords(self, p: torch.Tensor) -> torch.Tensor:
        return (p / self.side).long().clamp_(0, self.cells - 1)  # (P, D)

    def cell_ids(self, p: torch.Tensor) -> torch.Tensor:
        return (self.cell_coords(p) * self.weights).sum(1)  # (P,)

    def offsets(self, dim: int) -> list[list[int]]:
        """Neighbour cell offsets: the span^D block (the one cell when span is 1)."""
        half = self.span // 2
        return torch.cartesian_prod(*([torch.arange(-half, half + 1)] * dim)).reshape(-1, dim).tolist()


class StripList:
    """Samples sorted by strip (`strip_layout`: axes 1..D-1), then by their axis-0 coordinate within a strip."""

    def __init__(self, y: torch.Tensor, r_c: float):
        m, dim = y.shape
        self.layout = lay = strip_layout(float(r_c), m, dim)
        sid = self.strip_ids(y)
        self.order = self.sorted_order(y, sid)
        self.ys = y[self.order].contiguous()  # (M, D)
        self.counts = torch.bincount(sid, minlength=lay.strips ** (dim - 1))
        self.starts = self.counts.cumsum(0) - self.counts

    def strip_ids(self, p: torch.Tensor) -> torch.Tensor:
        sid = torch.zeros(p.shape[0], dtype=torch.long)
        for k in range(p.shape[1] - 1, 0, -1):
            sid = sid * self.layout.strips + (p[:, k] / self.layout.side).long().clamp_(0, self.layout.strips - 1)
        return sid

    def sorted_order(self, p: torch.Tensor, sid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """p's order by strip, then along axis 0."""
        sid = self.strip_ids(p) if sid is None else sid
        order = torch.argsort(p[:, 0], stable=True)
        return order[torch.argsort(sid[order], stable=True)]


def near_sums_torch(x: torch.Tensor, y: torch.Tensor, kernel: str, h: float, a: float, moment: bool,
                    self_pairs: bool, r_c: Optional[float] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference near field: candidate pairs of each neighbour cell gathered in chunks of
    NEAR_CHUNK_PAIRS, kernel values by torch.  -> S (N,), G (N, D)."""
    n, dim = x.shape
    r_c = CUTOFF * a if r_c is None else r_c
    grid = CellList(y, r_c)
    s_out = torch.zeros(n, dtype=torch.float64)
    g_out = torch.zeros(n, dim, dtype=torch.float64)
    cx = grid.cell_coords(x)  # (N, D)
    for off in grid.offsets(dim):
        nb = ((cx + torch.tensor(off)) % grid.cells * grid.weights).sum(1)  # (N,)
        cnt, st = grid.counts[nb], grid.starts[nb]
        ends = cnt.cumsum(0)
        i0 = 0
        while i0 < n:
            base = int(ends[i0 - 1]) if i0 > 0 else 0
            i1 = max(int(torch.searchsorted(ends, base + NEAR_CHUNK_PAIRS, right=True)), i0 + 1)
            c = cnt[i0:i1]
            total = int(c.sum())
            if total > 0:
                xi = torch.repeat_interleave(torch.arange(i0, i1), c)  # (P,)
                first = torch.repeat_interleave(c.cumsum(0) - c, c)
                j = st[xi] + (torch.arange(total) - first)  # (P,) into the sorted samples
                _add_pairs(x, grid, xi, j, kernel, h, a, r_c, moment, self_pairs, s_out, g_out)
            i0 = i1
    return s_out, g_out


def _add_pairs(x: torch.Tensor, grid: CellList, xi: torch.Tensor, j: torch.Tensor, kernel: str, h: float, a: float,
               r_c: float, moment: bool, self_pairs: bool, s_out: torch.Tensor, g_out: torch.Tensor) -> None:
    """Accumulate the candidate pairs (xi, j) closer than r_c into s_out, g_out."""
    kern, dim = KERNELS.get(kernel), x.shape[1]
    u = x[xi] - grid.ys[j]  # (P, D): x - y
    u = minimum_image(u, in_place=True)
    r2 = u.square().sum(1)
    keep = r2 < r_c * r_c
    if self_pairs:
        keep &= grid.order[j] != xi
    xi, u, r2 = xi[keep], u[keep], r2[keep]
    r = r2.sqrt()
    ra = (r / a) ** CHI_POWER
    g = torch.exp(kern.log(r, h, dim) - ra)  # (P,)
    s_out.index_add_(0, xi, g)
    if moment:
        g_out.index_add_(0, xi, -g.unsqueeze(1) * u)  # k chi (y - x)
    else:
        rs = r.clamp_min(1e-300)
        dg = g * (kern.dlog(r, h, dim) - CHI_POWER * ra / rs)  # d(k chi)/dr
        g_out.index_add_(0, xi, (dg / rs).unsqueeze(1) * u)  # grad_x: g'(r) (x - y)/r


# ------------------------------------------------------------------ compiled loop


def compiled_available() -> bool:
    """Whether the compiled loop can run here (numba importable)."""
    return _compiled_helpers()


@functools.lru_cache(maxsize=1)
def numba_installed() -> bool:
    """Whether numba is installed, found without importing it (0.25 s, which a trial that never runs the loop,
    a 1-D one, need not pay): what the cost model asks."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


@functools.lru_cache(maxsize=1)
def _compiled_helpers() -> bool:
    """Whether numba imports; if so the loop's helpers in this module's globals are compiled (once)."""
    from .plane_loop import compile_in

    return compile_in(globals(), ("_wrap", "_exp_neg", "_term", "_segment", "_segment_half"), ("_strip_row", "_lower", "_strip_segments"), ()) is not None


@functools.lru_cache(maxsize=None)
def _compiled_loop(kcode: int = 0, wrap: bool = False, moment: bool = False) -> Optional[Callable[..., None]]:
    """`_near_loop` compiled by numba for one kernel code, wrap flag and sum (moment or gradient), or None without
    numba.  Each is a copy of the function whose last three parameters default to them and are left out of the
    call, so numba compiles them as constants (a branch-free pair loop that computes only what it sums), and
    only the copies a process uses are compiled (a few seconds each, then loaded from the disk cache next to
    this file, one file per copy).  The copies release the GIL: `near_sums` runs ranges of points on threads."""
    if not _compiled_helpers():
        return None
    import types

    from .plane_loop import compile_in

    name = f"_near_loop_k{kcode}_{'wrap' if wrap else 'strips'}_{'moment' if moment else 'grad'}"
    copy = types.FunctionType(_near_loop.__code__, globals(), name, (kcode, wrap, moment))
    copy.__qualname__ = name
    return compile_in({name: copy}, (), (), (name,), nogil=True)[0]


@functools.lru_cache(maxsize=None)
def _pool(threads: int):
    """A thread pool for the compiled loop's ranges (one per thread count used)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads, thread_name_prefix="near")


def _wrap(c, cells, two_pi):
    """A neighbour cell index c (one cell beyond either edge at most) -> (its index on the torus, the shift of
    its samples' periodic image)."""
    if c < 0:
        return c + cells, -two_pi
    if c >= cells:
        return c - cells, two_pi
    return c, 0.0


def _strip_row(o, x, i, home, strips, span, shift, side, two_pi):
    """Row o of point i's block of strips (its offsets on axes 1..D-1): -> the strip's index and the squared
    distance from the point to the strip (0 with span 1), the axes' image shifts written into shift[1:]."""
    base, stride, rem, gap2 = 0, 1, o, 0.0
    for k in range(1, home.shape[0]):
        c = home[k]
        if span > 1:
            c = c + rem % span - span // 2
            edge = c * side  # the strip's lower edge, unwrapped: its samples' image is within side of it
            d = max(edge - x[i, k], x[i, k] - edge - side, 0.0)
            gap2 += d * d
            c, shift[k] = _wrap(c, strips, two_pi)
            rem //= span
        base += c * stride
        stride *= strips
    return base, gap2


def _lower(ys0, lo, hi, v):
    """The first index in lo..hi whose ys0 is >= v (ys0 ascending there), by bisection."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if ys0[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _strip_segments(ys0, st, en, x0, w, seg_lo, seg_hi, seg_shift, two_pi):
    """A strip's samples (st..en, ascending along axis 0) within w of x0 along axis 0: one range, or two where
    x0 +- w leaves [0, 2 pi) (w <= pi: they never overlap), each with its image shift.  -> how many."""
    xl, xh = x0 - w, x0 + w
    if xl < 0.0:
        seg_lo[0], seg_hi[0], seg_shift[0] = _lower(ys0, st, en, xl + two_pi), en, -two_pi
        seg_lo[1], seg_hi[1], seg_shift[1] = st, _lower(ys0, st, en, xh), 0.0
        return 2
    if xh > two_pi:
        seg_lo[0], seg_hi[0], seg_shift[0] = _lower(ys0, st, en, xl), en, 0.0
        seg_lo[1], seg_hi[1], seg_shift[1] = st, _lower(ys0, st, en, xh - two_pi), two_pi
        return 2
    seg_lo[0], seg_hi[0], seg_shift[0] = _lower(ys0, st, en, xl), _lower(ys0, st, en, xh), 0.0
    return 1


def _exp_neg(x):
    """exp(x) in float64 for x <= 0 (below -708: exp(-708)), written out so that LLVM vectorises the loops
    that call it (numba's math.exp is a libm call): 2^n times the degree-12 Taylor polynomial on the remainder
    |r| <= ln2 / 2 (relative error below 2e-16), evaluated in Estrin's form (four levels of multiply-adds
    instead of Horner's twelve: the pair loop is bound by this chain's latency), n written into the exponent
    bits through a float whose low mantissa bits hold n + 1023 (AVX2 has no packed float64 -> int64
    conversion)."""
    x = max(x, -708.0)
    n = np.floor(x * _LOG2E + 0.5)  # np.floor: math.floor returns an int, a scalar conversion
    r = x - n * _LN2_HI - n * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    c = _TAYLOR  # 1/0!, ..., 1/12!
    lo = (c[0] + c[1] * r) + (c[2] + c[3] * r) * r2 + ((c[4] + c[5] * r) + (c[6] + c[7] * r) * r2) * r4
    hi = (c[8] + c[9] * r) + (c[10] + c[11] * r) * r2 + c[12] * r4
    p = lo + hi * (r4 * r4)
    bits = np.float64(n + (1023.0 + 6755399441055744.0)).view(np.int64)
    return p * np.int64(bits << np.int64(52)).view(np.float64)


def _term(kcode, dim, r2, inv_a2, inv_h, inv_h2):
    """k chi of a pair at squared distance r2, and d(k chi)/dr / r: the kernels' closed forms
    (COMPILED_KERNELS) times chi = exp(-(r / a)^8), (r / a)^8 as (r^2 / a^2)^4; every branch is on kcode and
    dim, constants where `_segment` is inlined, so the pair loop has none."""
    t = r2 * inv_a2
    t *= t
    ra = t * t
    cut = 8.0 * ra / max(r2, 1e-300)
    if kcode == 0:  # gaussian
        g = _exp_neg(-0.5 * r2 * inv_h2 - ra)
        return g, g * (-inv_h2 - cut)
    if kcode == 1:  # laplacian
        r = math.sqrt(r2)
        g = _exp_neg(-r * inv_h - ra)
        return g, g * (-inv_h / max(r, 1e-150) - cut)
    if kcode == 2:  # cauchy: (1 + r^2/h^2)^-(d+1)/2
        q = 1.0 + r2 * inv_h2
        g = (1.0 / q if dim == 1 else (1.0 / (q * math.sqrt(q)) if dim == 2 else 1.0 / (q * q))) * _exp_neg(-ra)
        return g, g * (-(dim + 1) * inv_h2 / q - cut)
    if kcode == 3:  # matern32
        v = math.sqrt(3.0 * r2) * inv_h
        g = (1.0 + v) * _exp_neg(-v - ra)
        return g, g * (-3.0 * inv_h2 / (1.0 + v) - cut)
    v = math.sqrt(5.0 * r2) * inv_h  # matern52
    q = 1.0 + v + v * v * (1.0 / 3.0)
    g = q * _exp_neg(-v - ra)
    return g, g * (-5.0 * (1.0 + v) * inv_h2 / (3.0 * q) - cut)


def _segment(kcode, wrap, dim, moment, ys3, lo, hi, c0, c1, c2, self_j, consts):
    """A point's sums over the samples lo..hi (sorted order; ys3 (3, M), zero rows above D) from (c0, c1, c2),
    the point minus the segment's image shift: one branch-free loop (the sample self_j and the pairs beyond
    r_c masked, not skipped).  wrap: the minimum image of every pair (one strip: `StripLayout.wrap`)."""
    r_c2, inv_a2, inv_h, inv_h2 = consts[0], consts[1], consts[2], consts[3]
    two_pi, inv_2pi = 2.0 * math.pi, 0.5 / math.pi
    s, g0, g1, g2 = 0.0, 0.0, 0.0, 0.0
    y0, y1, y2 = ys3[0, lo:hi], ys3[1, lo:hi], ys3[2, lo:hi]  # views indexed from 0: no negative-index
    self_t = self_j - lo  # wrap-around check on each load, so the loads are contiguous vector loads
    for t in range(hi - lo):
        d0, d1, d2 = c0 - y0[t], c1 - y1[t], c2 - y2[t]
        if wrap:
            d0 -= two_pi * np.floor(d0 * inv_2pi + 0.5)
            d1 -= two_pi * np.floor(d1 * inv_2pi + 0.5)
            d2 -= two_pi * np.floor(d2 * inv_2pi + 0.5)
        r2 = d0 * d0 + d1 * d1 + d2 * d2
        g, dg = _term(kcode, dim, r2, inv_a2, inv_h, inv_h2)
        keep = (r2 < r_c2) & (t != self_t)
        g = g if keep else 0.0
        w = -g if moment else (dg if keep else 0.0)  # k chi (y - x), or d(k chi)/dr / r (x - y)
        s += g
        g0 += w * d0
        g1 += w * d1
        g2 += w * d2
    return s, g0, g1, g2


def _segment_half(kcode, wrap, dim, moment, ys3, lo, hi, c0, c1, c2, acc, consts):
    """`_segment` for a set that is the points themselves, each pair read once: the point's sums returned, the
    samples' (the pair seen from the other end: the same term, the vector reversed) added into acc (4, M),
    sorted order.  The caller passes only samples after the point in sorted order (no self pair)."""
    r_c2, inv_a2, inv_h, inv_h2 = consts[0], consts[1], consts[2], consts[3]
    two_pi, inv_2pi = 2.0 * math.pi, 0.5 / math.pi
    s, g0, g1, g2 = 0.0, 0.0, 0.0, 0.0
    y0, y1, y2 = ys3[0, lo:hi], ys3[1, lo:hi], ys3[2, lo:hi]
    a_s, a0, a1, a2 = acc[0, lo:hi], acc[1, lo:hi], acc[2, lo:hi], acc[3, lo:hi]
    for t in range(hi - lo):
        d0, d1, d2 = c0 - y0[t], c1 - y1[t], c2 - y2[t]
        if wrap:
            d0 -= two_pi * np.floor(d0 * inv_2pi + 0.5)
            d1 -= two_pi * np.floor(d1 * inv_2pi + 0.5)
            d2 -= two_pi * np.floor(d2 * inv_2pi + 0.5)
        r2 = d0 * d0 + d1 * d1 + d2 * d2
        g, dg = _term(kcode, dim, r2, inv_a2, inv_h, inv_h2)
        keep = r2 < r_c2
        g = g if keep else 0.0
        w = -g if moment else (dg if keep else 0.0)
        s += g
        g0 += w * d0
        g1 += w * d1
        g2 += w * d2
        a_s[t] += g
        a0[t] -= w * d0
        a1[t] -= w * d1
        a2[t] -= w * d2
    return s, g0, g1, g2


def _near_loop(x, ys3, slot, starts, counts, strips, span, side, consts, self_pairs, s_out, g_out, acc, lo, hi,
               kcode=0, wrap=False, moment=False):
    """Plain-Python form of the compiled loop (numba compiles it as written): for each point lo..hi-1, the
    samples of the strips of its block (`StripLayout`) closer than r_c, each read only within the axis-0 range
    that distance leaves, in place into s_out, g_out, for kernel `kcode` (wrap: one strip, every pair's minimum
    image; moment: the first moment, else the gradient); slot[i] is sample i's place in the sorted samples (its
    self pair).  A segment's periodic image is one shift per axis (-2 pi, 0 or 2 pi), so a pair needs no
    minimum-image rounding; the point's sums stay in registers (D <= 3)."""
    dim = x.shape[1]
    two_pi = 2.0 * math.pi
    r_c2 = consts[0]
    home = np.zeros(dim, np.int64)  # scratch: the point's strip, its row's image shifts, the row's segments
    shift = np.zeros(dim, np.float64)
    seg_lo, seg_hi, seg_shift = np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.float64)
    ys0 = ys3[0]
    half = self_pairs == 2
    for i in range(lo, hi):
        s_i, g0, g1, g2 = 0.0, 0.0, 0.0, 0.0
        self_j = slot[i] if self_pairs else -1
        own, stride = 0, 1
        for k in range(1, dim):
            home[k] = min(int(x[i, k] / side), strips - 1)
            own += home[k] * stride
            stride *= strips
        for o in range(span ** (dim - 1)):  # the strips of the block: offsets on axes 1..D-1
            base, gap2 = _strip_row(o, x, i, home, strips, span, shift, side, two_pi)
            if gap2 >= r_c2 or (half and base < own):
                continue
            st, en = starts[base], starts[base] + counts[base]
            if wrap:
                n_seg, seg_lo[0], seg_hi[0], seg_shift[0] = 1, st, en, 0.0
            else:
                n_seg = _strip_segments(ys0, st, en, x[i, 0], math.sqrt(r_c2 - gap2), seg_lo, seg_hi, seg_shift,
                                        two_pi)
            c1 = x[i, 1] - shift[1] if dim > 1 else 0.0
            c2 = x[i, 2] - shift[2] if dim > 2 else 0.0
            for sg in range(n_seg):
                if half:
                    first = max(seg_lo[sg], self_j + 1) if base == own else seg_lo[sg]
                    if seg_hi[sg] > first:
                        s, d0, d1, d2 = _segment_half(kcode, wrap, dim, moment, ys3, first, seg_hi[sg],
                                                      x[i, 0] - seg_shift[sg], c1, c2, acc, consts)
                        s_i, g0, g1, g2 = s_i + s, g0 + d0, g1 + d1, g2 + d2
                elif seg_hi[sg] > seg_lo[sg]:
                    s, d0, d1, d2 = _segment(kcode, wrap, dim, moment, ys3, seg_lo[sg], seg_hi[sg],
                                              x[i, 0] - seg_shift[sg], c1, c2, self_j, consts)
                    s_i, g0, g1, g2 = s_i + s, g0 + d0, g1 + d1, g2 + d2
        s_out[i] += s_i
        g_out[i, 0] += g0
        if dim > 1:
            g_out[i, 1] += g1
        if dim > 2:
            g_out[i, 2] += g2
