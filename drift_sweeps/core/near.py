"""The Ewald near field on the torus: sums of k chi over pairs closer than r_c.

    S(x_i) = sum_j k chi(r_ij),   G(x_i) = sum_j k chi (y_j - x_i)  (moment)
                                        or  sum_j d(k chi)/dr (x_i - y_j) / r_ij  (gradient)

over the pairs with r_ij = |x_i - y_j| < r_c = CUTOFF a (minimum image: r_c < pi), with
chi(r) = exp(-(r / a)^CHI_POWER) (spectral.py's Ewald split).  Two implementations:

- `near_sums_torch`: the reference, torch operations on gathered candidate pairs (about 1e-7 s
  per candidate pair: a dozen passes over each chunk);
- a compiled loop (numba, near_loop.py) for the kernels in `COMPILED_KERNELS`, one pass over the
  candidates of each point with the kernel written out, the samples in strips sorted along axis 0 so a point
  reads only the disc's chord of each strip (`StripLayout`): per segment one branch-free loop
  (pairs beyond r_c and the self pair masked, exp written as a polynomial: `_exp_neg`) that LLVM
  vectorises, about 30x fewer seconds per candidate pair than the torch path; the points' own set
  (self_pairs) read once per pair, both ends' terms (`SELF_ONCE`); a large call's points visited in
  strip order (`SORT_POINTS`) and split into ranges run at once on torch's thread count (`thread_parts`).

`near_sums` takes the compiled loop when numba imports and the kernel has a compiled form, else
the torch one; tests/core/test_near.py holds the two to 1e-12 of each other.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch

from .geometry import TWO_PI, minimum_image
from .kernels import KERNELS
from .near_loop import LANES, compiled_helpers, compiled_loop

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


def near_sums(x: torch.Tensor, y: torch.Tensor, kernel: str, h: float, a: float, moment: bool,
              self_pairs: bool, compiled: Optional[bool] = None,
              r_c: Optional[float] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Near-field sums S (N,) and G (N, D) of y at x (float64, in [0, 2pi)); self_pairs: y is x,
    the pair j = i left out (and, compiled, each pair read once: SELF_ONCE).  compiled: None takes the
    compiled loop where it exists.  a = inf is chi = 1 (the whole kernel, the near-only plan), summed within
    r_c (default CUTOFF a, at most pi)."""
    usable = compiled is not False and kernel in COMPILED_KERNELS and compiled_available()
    if compiled and not usable:
        raise ValueError(f"no compiled near field for kernel {kernel!r} (numba installed: {compiled_available()})")
    if not usable:
        return near_sums_torch(x, y, kernel, h, a, moment, self_pairs, r_c)
    r_c = CUTOFF * a if r_c is None else r_c
    grid = StripList(y, r_c)
    loop = compiled_loop(COMPILED_KERNELS[kernel], grid.layout.wrap, bool(moment))
    n, dim = x.shape
    s_out = torch.zeros(n, dtype=torch.float64)
    g_out = torch.zeros(n, dim, dtype=torch.float64)
    ys3 = torch.zeros(3, grid.ys.shape[0] + LANES, dtype=torch.float64)  # (3, M + LANES): zero rows above D (the pair
    # loop has no D branch), and columns past M that a segment's last vector reads, masked
    ys3[:dim, : grid.ys.shape[0]] = grid.ys.T
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
    # a thread's shares of the samples' sums (padded as ys3: a segment's last vector writes zeros there)
    acc = torch.zeros(parts, 4, grid.ys.shape[0] + LANES if half else 1, dtype=torch.float64)
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
        shares = acc.sum(0)[:, own_slot]  # (the padding's shares are zeros, never indexed)
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
            volume, rows = strip_volume(dim, fine, r_c / side)
            lay = StripLayout(strips, fine, side, False, m * volume * side**dim / TWO_PI**dim, rows)
        else:
            continue
        if lay.pairs < best_cost:
            best, best_cost = lay, lay.pairs
    return best or wrap


RHO_STEPS = 64  # strip_volume's table: steps over the (fine - 1/2, fine] that strip_layout's rho lies in


def strip_volume(dim: int, fine: int, rho: float) -> tuple[float, float]:
    """`_strip_volumes` at r_c = rho sides, an estimate for pricing: interpolated in a table of RHO_STEPS + 1 values
    per (dim, fine) over (fine - 1/2, fine], where `strip_layout` puts rho (r_c <= pi), so a run whose bandwidth
    changes at every step prices its layouts without computing them again; computed directly elsewhere."""
    lo = fine - 0.5
    if not lo <= rho <= fine:
        volume, rows = _strip_volumes(dim, fine, (rho,))
        return float(volume[0]), float(rows[0])
    volume, rows = _strip_volume_table(dim, fine)
    u = (rho - lo) * 2 * RHO_STEPS
    i = min(int(u), RHO_STEPS - 1)
    t = u - i
    return volume[i] + t * (volume[i + 1] - volume[i]), rows[i] + t * (rows[i + 1] - rows[i])


@functools.lru_cache(maxsize=256)
def _strip_volume_table(dim: int, fine: int) -> tuple[list[float], list[float]]:
    volume, rows = _strip_volumes(dim, fine, tuple((fine - 0.5 + 0.5 * j / RHO_STEPS) for j in range(RHO_STEPS + 1)))
    return volume.tolist(), rows.tolist()


def _strip_volumes(dim: int, fine: int, rhos: tuple[float, ...], grid: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected candidate volume (units of a strip's side^D) and strips read per point at each r_c = rho sides,
    a point's place in its strip on a grid of `grid` positions per axis."""
    f = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    off = torch.arange(-fine, fine + 1, dtype=torch.float64)
    gap2 = ((off - f[:, None]).clamp_min(0) + (f[:, None] - off - 1).clamp_min(0)).square()  # (grid, 2 fine + 1)
    total = gap2
    for _ in range(dim - 2):
        total = (total[:, None, :, None] + gap2[None, :, None, :]).reshape(total.shape[0] * grid, -1)
    r2 = torch.tensor(rhos, dtype=torch.float64).square()[:, None, None]  # (R, 1, 1)
    width = 2.0 * (r2 - total).clamp_min(0).sqrt()
    return width.sum(2).mean(1), (total < r2).sum(2).double().mean(1)


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
        """p's order by strip, then along axis 0: one stable sort of an integer key (5x faster than sorting
        doubles), the strip in the high bits and axis 0 in 2 pi / 2^bits steps below (2^-35 2 pi or finer: two
        samples out of order lie closer than that along axis 0, so at a chord's end both are ~r_c away)."""
        sid = self.strip_ids(p) if sid is None else sid
        bits = 62 - (self.layout.strips ** (p.shape[1] - 1)).bit_length()
        steps = (p[:, 0] * (2.0**bits / TWO_PI)).long().clamp_(0, 2**bits - 1)
        return torch.argsort(sid * 2**bits + steps, stable=True)


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
    return compiled_helpers()


@functools.lru_cache(maxsize=1)
def numba_installed() -> bool:
    """Whether numba is installed, found without importing it (0.25 s, which a trial that never runs the loop,
    a 1-D one, need not pay): what the cost model asks."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


@functools.lru_cache(maxsize=None)
def _pool(threads: int):
    """A thread pool for the compiled loop's ranges (one per thread count used)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads, thread_name_prefix="near")
