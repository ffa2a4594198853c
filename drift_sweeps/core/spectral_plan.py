"""Which exact evaluation of a torus field is cheapest: streaming, a direct NUFFT, an Ewald split, the
near pairs alone, or (1-D, exponential-polynomial kernels) a scan over the sorted samples.

`plan_for` prices the five with the cost model below (seconds, one thread; only ratios matter)
and returns a `Plan`.  Pricing is cheap at every bandwidth: the direct truncation is scaled from
a bandwidth bin's (K h is nearly constant), streaming's periodic images counted at the bin's upper edge, the Ewald
far grid estimated (EWALD_MODES / a per dimension), and below COST_CALL of streaming (small N) nothing spectral is
priced at all.  Building a plan for a new bandwidth (the exact truncation, the coefficient tables) is not free,
so it is priced too (`build_cost`), and a plan is built only once what streaming has cost beyond the plan's own
evaluations, at this bandwidth, reaches that price (ski rental: never more than twice the
better choice).  A kernel that has fallen below exp(-NEAR_ONLY_LOG) of k(0) within r_t <= pi (a narrow
Gaussian) needs no Fourier part at all: the "near" plan sums the pairs closer than r_t
(near.py with chi = 1), nothing to build.  In 1-D the Laplacian and Matern kernels are summed exactly by the
"scan" plan (expscan.py: cumulative sums over the sorted samples, O((N + M) log M), nothing to build)
wherever its expansion is precise enough (`scan_degree`).  An annealed schedule, a new bandwidth at every
step, thus gets the spectral path only where one plan's build and evaluation beat one streaming call; a
fixed bandwidth builds it after a few calls.  Built plans are kept while the bandwidth does not change.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..spine import theory
from . import expscan, fourier, near
from .field import FieldSpec
from .geometry import TWO_PI
from .kernels import KERNELS

FAR_MODES = 100.0  # Ewald: the far part needs at most about FAR_MODES / a modes per dimension (chi power 8)
EWALD_MODES = 85.0  # ... and about EWALD_MODES / a on average (measured 0.8-0.95 of FAR_MODES / a): for pricing
MAX_MODES_2D = 1400  # 2-D Ewald far grids up to this many modes per dimension (10^6 points: K = 1131)
EWALD_MIN_MODES = 8.0  # the far part needs at least ~8/a modes: direct below that is never beaten
# cost model (seconds per unit, one thread), every term refitted 2026-12-04 on one machine to direct measurements:
# streaming to `python -m benchmarks.field --small`'s stream rows (model / measured 0.77-1.23), the NUFFT terms to
# field_sums of direct plans, the near terms to near_sums, the builds to annealed minus fixed spectral calls
# (docs/benchmarks.md, "One cost model, fitted in one hour")
COST_PAIR = 2.45e-9  # streaming: one kernel value (pair x image) in 2-D ...
COST_PAIR_DIM = {1: 0.74}  # ... times this in 1-D (one coordinate; 1.0 where not listed) ...
COST_PAIR_KERNEL = {"gaussian": 0.9, "laplacian": 0.9, "cauchy": 1.15, "matern32": 1.5, "matern52": 1.9}  # ... and
# this per kernel (the torus' torch blocks; 1.0 for kernels not listed)
COST_STREAM_CALL = 6.7e-4  # streaming: fixed cost of one evaluation (four passes' set-up)
NUFFT_EPS = {torch.float64: 1e-12, torch.float32: 1e-8}  # FINUFFT precision per input dtype (others: float64's)
EPS64 = NUFFT_EPS[torch.float64]
UPSAMPLING = (2.0, 1.25)  # FINUFFT's fine-grid factors sigma; a transform takes the cheaper (`nufft_choice`)
MAX_SPREAD = 16  # FINUFFT's widest spreading kernel: sigma = 1.25 reaches 1e-8 (14 wide), not 1e-12 (20)
COST_CALL = 4.5e-4  # NUFFT: fixed cost of one spectral evaluation (points, conversions, the fallback check; the plans
# kept: spectral._nufft_plan)
# NUFFT terms, fitted 2026-12-04 (relative least squares, COST_CALL fixed) to field_sums of direct plans, one thread,
# float32 and float64 inputs, sigma 2 and 1.25: 1-D N = 256-16384, K = 16-4096; 2-D N = 256-16384, K = 4-200;
# 3-D N = 256-8192, K = 4-24 (model / measured 0.75-1.31, 0.63-1.31, 0.40-1.24; median off 9-14%, docs/benchmarks.md):
COST_POINT = {1: 2.2e-8, 2: 6.9e-8, 3: 7.2e-8}  # one point of one transform, apart from spreading ...
COST_SPREAD = {1: 1.8e-9, 2: 5.5e-10, 3: 6.5e-10}  # ... and per cell of its w^D spreading block
COST_MODE = {1: 1.1e-8, 2: 1.1e-8, 3: 8.5e-9}  # one fine-grid mode of one transform's FFT ...
FFT_CACHE_MODES = 1 << 18  # ... times (fine modes / this)^0.35 beyond this many
COST_COEF = {1: 1.2e-8, 2: 2.9e-8, 3: 9.0e-8}  # one mode of the (2K+1)^D coefficient grid (the products, copies)
COST_NEAR = {True: 1.7e-9, False: 1.2e-7}  # Ewald: one candidate pair, compiled loop (strips) / torch (cells) ...
# (a strip read and a point's entry: near.ROW_PAIRS and near.POINT_PAIRS candidates' worth; the compiled term
# 1.9e-9 -> 1.7e-9 once segments ran whole vectors, near_loop.LANES: model / measured 0.91-1.10 at N = 1024-16384)
COST_NEAR_CALL = 4e-4  # near field (Ewald's or the near-only plan's): fixed cost of one evaluation, two sets (their
# strip lists, sorts and tensors; near_sums at N = 256-16384, a = 0.3-0.98: model / measured 0.92-1.15)
NEAR_ONLY_LOG = 36.0  # near-only plan: pairs with log k(r) / k(0) below -36 (2e-16) are left out
COST_SCAN_CALL = 1e-3  # 1-D exponential-polynomial scan (expscan.py): fixed cost of one evaluation ...
COST_SCAN_POINT = 1e-7  # ... per point or sample and (degree + 1) (sorts, searches, cumulative sums, reads)
COST_BUILD_CALL = {1: 3.5e-4, 2: 5e-4, 3: 7e-4}  # a new bandwidth's plan: truncation search and tables, fixed part
COST_BUILD_MODE = {1: 3e-7, 2: 4e-8, 3: 3e-7}  # ... per mode of the (2K+1)^D coefficient grid (norms, distinct
# norms, multipliers); refitted 2026-12-04 (night) once the direct truncation search starts near its answer
# (fourier._first_count) and the distinct norms are marked, not sorted (fourier._distinct): annealed minus fixed
# spectral calls, 1-D K = 7-745 (0.35-0.70 ms), 2-D K = 7-435 (0.44-0.54 ms at K <= 27, 2.2-2.6 at 92-115, 23 at
# 276-435) (3-D not refitted)
COST_QUAD = {1: 2e-8, 2: 1.2e-8, 3: 4e-8}  # Ewald build: one (frequency, quadrature node) term (a cos; in 2-D a cos
# and a sin of the projection, fourier._near_radial_direct: 1.0-2.0e-8 in 2-D builds, 4 kernels, K = 80-137)
_SEEN: dict[tuple[str, float, int], int] = {}  # (kernel, bandwidth, dim) -> calls so far (bounded below)
_BUILT: "OrderedDict[tuple, Plan]" = OrderedDict()  # built plans, most recent last (bounded)
_BUILT_MAX = 64
_COUNTED: "set | None" = None  # inside `one_step()`: the keys already counted in this step of a pack


@dataclass(frozen=True)
class Plan:
    """How one (kernel, h, dim, sizes) field is evaluated: 'direct', 'ewald', 'near', 'scan' or 'stream'."""

    method: str
    modes: int = 0  # Fourier modes per dimension: -modes..modes
    a: float = 0.0  # Ewald split radius (chi's scale)
    cost_s: float = 0.0  # the cost model's estimate of one evaluation
    stream_cost_s: float = 0.0
    build_s: float = 0.0  # the cost model's estimate of building it for a new bandwidth
    cutoff: float = 0.0  # 'near': the pairs closer than this are summed, the kernel whole


def forget() -> None:
    """Drop the calls counted and the plans built so far: a trial's plans then depend on its own calls only, not
    on what ran earlier in the process (a plan chosen at another call differs from streaming in the last bits)."""
    _SEEN.clear()
    _BUILT.clear()


@contextlib.contextmanager
def one_step():
    """The fields of a pack's runs at one step count as one call each (what each run alone would count), so a
    packed run builds its plans at the same step as it would alone."""
    global _COUNTED
    _COUNTED = set()
    try:
        yield
    finally:
        _COUNTED = None


def supported(kernel: str, dim: int) -> bool:
    """Whether the kernel has what the spectral path needs: a closed-form transform and mass."""
    return kernel in theory.SPECTRA and KERNELS.get(kernel).mass is not None and 1 <= dim <= 3


@functools.lru_cache(maxsize=1)
def nufft_available() -> bool:
    """Whether FINUFFT can be imported here (without it every field streams)."""
    try:
        import finufft  # noqa: F401
    except ImportError:
        return False
    return True


def scan_degree(kernel: str, h: float, dim: int) -> int:
    """The moment's polynomial degree if the 1-D scan (expscan.py) is exact enough for this kernel at h
    (its expansion's rounding below expscan.SCAN_REL_ERROR), else -1."""
    exp_poly = KERNELS.get(kernel).exp_poly
    if dim != 1 or exp_poly is None:
        return -1
    degree = len(exp_poly[1])  # P's degree + 1: the moment u k(u)
    return degree if expscan.cancellation(exp_poly[0], degree, h) <= expscan.SCAN_REL_ERROR else -1


def scan_cost(kernel: str, h: float, dim: int, n: int, m: int, k: int) -> float:
    """One evaluation by the 1-D scan, or inf where it does not apply."""
    degree = scan_degree(kernel, h, dim)
    return COST_SCAN_CALL + COST_SCAN_POINT * (degree + 1) * (2 * n + m + k) if degree >= 0 else math.inf


def near_compiled(kernel: str) -> bool:
    """Whether the Ewald near field of `kernel` runs the compiled loop (near.py)."""
    return kernel in near.COMPILED_KERNELS and near.numba_installed()


def nufft_eps(dtype: torch.dtype) -> float:
    """FINUFFT's precision for inputs of this dtype (NUFFT_EPS)."""
    return NUFFT_EPS.get(dtype, EPS64)


def spread_width(eps: float, sigma: float) -> int:
    """FINUFFT's spreading kernel width at precision eps and upsampling sigma (its rule: one point per digit
    at sigma = 2, else -ln(eps) / (pi sqrt(1 - 1/sigma))); above MAX_SPREAD it cannot reach eps."""
    if sigma == 2.0:
        return max(2, math.ceil(-math.log10(eps / 10.0)))
    return max(2, math.ceil(-math.log(eps) / (math.pi * math.sqrt(1.0 - 1.0 / sigma))))


def _smooth_even(n: int) -> int:
    """The smallest even number >= n with no prime factor above 5 (FINUFFT's fine-grid sizes)."""
    n += n % 2
    while True:
        r = n
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return n
        n += 2


@functools.lru_cache(maxsize=4096)
def nufft_choice(modes: int, dim: int, n: int, m: int, eps: float = EPS64) -> tuple[float, float]:
    """One spectral evaluation of n points against m samples in all (two sample sets share each transform:
    spectral.field_sums): one type-1 transform spreading the m samples, 1 + D type-2 transforms interpolating at
    the n points, each point over a w^D block, each transform an FFT of the fine grid (sigma (2K + 1), at least
    2 w, per dimension), and the coefficient products.  -> (cost, the upsampling sigma that gives it): the cheaper
    of UPSAMPLING whose kernel reaches eps."""
    best = (math.inf, 2.0)
    for sigma in UPSAMPLING:
        w = spread_width(eps, sigma)
        if w > MAX_SPREAD:
            continue
        fine = _smooth_even(max(math.ceil(sigma * (2 * modes + 1)), 2 * w)) ** dim
        cost = (COST_CALL + (COST_POINT[dim] + COST_SPREAD[dim] * w**dim) * (m + (dim + 1) * n)
                + (dim + 2) * COST_MODE[dim] * fine * max(1.0, fine / FFT_CACHE_MODES) ** 0.35
                + COST_COEF[dim] * (2 * modes + 1) ** dim)
        best = min(best, (cost, sigma))
    return best


def nufft_cost(modes: int, dim: int, n: int, m: int, eps: float = EPS64) -> float:
    """One spectral evaluation's cost (`nufft_choice`)."""
    return nufft_choice(modes, dim, n, m, eps)[0]


def stream_cost(kernel: str, dim: int, images: int, n: int, m: int, k: int) -> float:
    """One streaming evaluation: every pair at every periodic image."""
    return (COST_STREAM_CALL + COST_PAIR * COST_PAIR_DIM.get(dim, 1.0) * COST_PAIR_KERNEL.get(kernel, 1.0)
            * n * (m + k) * images)


def near_cost(kernel: str, dim: int, n: int, m: int, a: float, r_c: float = 0.0, threads: int = 1) -> float:
    """The Ewald near field of n points against m samples in all, two sets, at split radius a (or within r_c):
    COST_NEAR_CALL a call, and the compiled loop reads each strip of a point's block that comes within r_c, and
    in it the samples within the chord that leaves (near.StripLayout.pairs: candidates, strips read and entry
    per point in candidate pairs' worth; the points' own set read once per pair, near.SELF_ONCE_SHARE of that),
    the points split over the threads where a call is large enough (near.thread_parts); the torch reference a
    5^D block of cells of side r_c / 2."""
    r_c = r_c or near.CUTOFF * a
    if near_compiled(kernel):
        lay = near.strip_layout(r_c, m // 2, dim)
        parts = near.thread_parts(n, lay.candidates, threads)
        sets = 1.0 + (near.SELF_ONCE_SHARE if near.SELF_ONCE else 1.0)  # the data, and the points' own set
        return COST_NEAR_CALL + sets * COST_NEAR[True] * n * lay.pairs / parts
    cells, span = near.cell_layout(r_c)
    return COST_NEAR_CALL + COST_NEAR[False] * n * m * (span / cells) ** dim / threads


def ewald_cost(kernel: str, dim: int, n: int, m: int, a: float, modes: float, threads: int,
               eps: float = EPS64) -> float:
    """One Ewald evaluation: the far grid's NUFFTs on `threads` threads and the near pairs within CUTOFF a."""
    return nufft_cost(int(modes), dim, n, m, eps) / threads + near_cost(kernel, dim, n, m, a, threads=threads)


def build_cost(method: str, modes: int, dim: int, a: float) -> float:
    """Building a plan for a new bandwidth: the coefficient grid, and for Ewald the near part's
    transform by quadrature (truncation search over ~1.5 K shells, then the grid's distinct |k|
    or the interpolation table, each at ~0.6 s r_c (1-D) or 0.8 s r_c (2-D) quadrature nodes)."""
    cost = COST_BUILD_CALL[dim] + COST_BUILD_MODE[dim] * (2 * modes + 1) ** dim
    if method == "ewald":
        r_c = near.CUTOFF * a
        nodes = (0.6 if dim == 1 else 0.8) * modes * math.sqrt(dim) * r_c + 64
        freqs = 1.5 * modes + (modes if dim == 1 else min(0.4 * (2 * modes + 1) ** 2,
                                                             modes * math.sqrt(2) / (fourier.NEAR_TABLE_STEP / r_c)))
        cost += COST_QUAD[dim] * freqs * nodes
    return cost


def ball_fraction(dim: int, r: float) -> float:
    """Share of the torus within distance r of a point."""
    vol = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1) * r**dim
    return min(1.0, vol / TWO_PI**dim)


@functools.lru_cache(maxsize=256)
def split_radius(kernel: str, dim: int, n: int, m: int, threads: int = 1, eps: float = EPS64) -> float:
    """Ewald radius a balancing the near pairs of n points against m samples in all (both sample sets:
    ~ n m |ball(CUTOFF a)|) against the far grid (~ (FAR_MODES / a)^dim modes), by the cost model (FINUFFT
    and the near loop on `threads` threads); r_c = CUTOFF a at most pi / 2."""
    best_a, best_c = math.pi / 2 / near.CUTOFF, math.inf
    for i in range(48):
        a = (math.pi / 2 / near.CUTOFF) * 0.85**i
        k_far = FAR_MODES / a
        if k_far > fourier.MAX_MODES_PER_DIM or (dim == 2 and k_far > MAX_MODES_2D):
            break
        c = ewald_cost(kernel, dim, n, m, a, k_far, threads, eps)
        if c < best_c:
            best_a, best_c = a, c
    return best_a


@functools.lru_cache(maxsize=1024)
def priced(kernel: str, h: float, dim: int, n: int, m: int, k: int, images: int, threads: int,
           eps: float = EPS64) -> Plan:
    """The cheapest method per the cost model, with its estimated evaluation and build costs
    (modes: exact for direct, estimated for Ewald)."""
    stream = stream_cost(kernel, dim, images, n, m, k) / threads
    best = Plan("stream", cost_s=stream, stream_cost_s=stream)
    c = scan_cost(kernel, h, dim, n, m, k) / threads
    if c < best.cost_s:  # exact and O((N + M) log M): cheaper than every other plan wherever it applies
        return Plan("scan", cost_s=c, stream_cost_s=stream)
    if not supported(kernel, dim) or stream <= COST_CALL / threads:
        return best  # the small-N path: no spectral evaluation beats this stream, nothing else is priced
    k_direct = fourier.modes_estimate(kernel, h, dim)
    if k_direct > 0:
        c = nufft_cost(k_direct, dim, n, m + k, eps) / threads
        if c < best.cost_s:
            best = Plan("direct", k_direct, 0.0, c, stream, build_cost("direct", k_direct, dim, 0.0))
    r_t = near_only_radius(kernel, h, dim)
    if r_t > 0.0:
        c = near_cost(kernel, dim, n, m + k, 0.0, r_t, threads)
        if c < best.cost_s:
            best = Plan("near", 0, 0.0, c, stream, 0.0, r_t)
    a = split_radius(kernel, dim, n, m + k, threads, eps) if dim <= 2 else 0.0  # the Ewald split: 1-D and 2-D
    if dim <= 2 and not 0 < k_direct <= EWALD_MIN_MODES / a:
        k_far = int(EWALD_MODES / a)
        c = ewald_cost(kernel, dim, n, m + k, a, k_far, threads, eps)
        if c < best.cost_s:
            best = Plan("ewald", k_far, a, c, stream, build_cost("ewald", k_far, dim, a))
    return best


@functools.lru_cache(maxsize=64)
def _near_only_scale(kernel: str, dim: int) -> float:
    """u with log k(u h) = -NEAR_ONLY_LOG at h = 1, by bisection (the compiled kernels are scale families:
    log k depends on r / h only)."""
    log = KERNELS.get(kernel).log
    lo, hi = 0.0, 1.0
    while float(log(torch.tensor(hi, dtype=torch.float64), 1.0, dim)) > -NEAR_ONLY_LOG:
        hi *= 2.0
        if hi > 1e6:
            return math.inf  # a heavy tail (Cauchy): never negligible within the torus
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(log(torch.tensor(mid, dtype=torch.float64), 1.0, dim)) > -NEAR_ONLY_LOG else (lo, mid)
    return hi


def near_only_radius(kernel: str, h: float, dim: int) -> float:
    """The radius beyond which the kernel is below exp(-NEAR_ONLY_LOG) of k(0), if the near-only plan
    can use it (at most pi, so only the minimum image is that close; a compiled near loop), else 0."""
    if not near_compiled(kernel):
        return 0.0
    r_t = _near_only_scale(kernel, dim) * h
    return r_t if r_t <= math.pi else 0.0


def plan_for(field: FieldSpec, bandwidth: float, dim: int, n: int, m: int, k: int, device: torch.device,
             dtype: torch.dtype = torch.float64) -> Plan:
    """The cheapest exact evaluation of a convolution-form field per the cost model, counting the
    plan's build at a new bandwidth (streaming where FINUFFT is not installed); dtype: the inputs' (the NUFFT's
    precision, NUFFT_EPS)."""
    if not field.periodic or device.type != "cpu" or not nufft_available():
        return Plan("stream")
    threads = torch.get_num_threads()
    scan = scan_cost(field.kernel, float(bandwidth), dim, n, m, k) / threads
    if scan < stream_cost(field.kernel, dim, 1, n, m, k) / threads:  # beats even one image: no need to count them
        return Plan("scan", cost_s=scan)
    # streaming priced with the image shells at the bin edge above h (they grow with h): one count per bin, not
    # per bandwidth (a heavy tail's count sums 10^5 shells, ~1 ms, as much as a small spectral call)
    images = (2 * field.shells(fourier.bin_edge(float(bandwidth), up=True), dim, quiet=True) + 1) ** dim
    price = priced(field.kernel, float(bandwidth), dim, n, m, k, images, threads, nufft_eps(dtype))
    if price.method == "stream":
        return price
    if price.method in ("near", "scan"):
        return price  # nothing to build
    key = (field.kernel, float(bandwidth), dim, price.method, price.a)
    if key in _BUILT:
        _BUILT.move_to_end(key)
        return _BUILT[key]
    seen_key = key[:3]
    if len(_SEEN) > 4096:
        _SEEN.clear()
    if _COUNTED is None or seen_key not in _COUNTED:
        _SEEN[seen_key] = _SEEN.get(seen_key, 0) + 1
        if _COUNTED is not None:
            _COUNTED.add(seen_key)
    seen = _SEEN[seen_key]
    if seen * (price.stream_cost_s - price.cost_s) < price.build_s:
        return Plan("stream", cost_s=price.stream_cost_s, stream_cost_s=price.stream_cost_s)  # a build would not pay yet
    modes = fourier.truncation(field.kernel, float(bandwidth), dim, price.a)  # exact, for this bandwidth
    if modes <= 0:  # the far part's truncation did not fit after all
        return Plan("stream", cost_s=price.stream_cost_s, stream_cost_s=price.stream_cost_s)
    plan = Plan(price.method, modes, price.a, price.cost_s, price.stream_cost_s, price.build_s)
    _BUILT[key] = plan
    while len(_BUILT) > _BUILT_MAX:
        _BUILT.popitem(last=False)
    return plan


def forced_plan(field: FieldSpec, bandwidth: float, dim: int, n: int, m: int,
                dtype: torch.dtype = torch.float64) -> Plan:
    """The spectral plan when the field asks for it: direct if its truncation fits, else Ewald."""
    if not field.periodic:
        raise ValueError("backend 'spectral' is for the torus (FieldSpec.periodic = True)")
    if not nufft_available():
        raise ValueError("backend 'spectral' needs FINUFFT (pip install finufft)")
    if not supported(field.kernel, dim):
        raise ValueError(f"backend 'spectral': kernel {field.kernel!r} in dim {dim} has no closed-form "
                         f"transform and mass (theory.SPECTRA, Kernel.mass)")
    k_direct = fourier.truncation(field.kernel, bandwidth, dim, 0.0, 1024)
    if k_direct > 0:
        return Plan("direct", k_direct)
    if dim <= 2:
        a = split_radius(field.kernel, dim, n, 2 * m, torch.get_num_threads(), nufft_eps(dtype))  # both sets
        k_far = fourier.truncation(field.kernel, bandwidth, dim, a)
        if k_far > 0:
            return Plan("ewald", k_far, a)
    k_direct = fourier.truncation(field.kernel, bandwidth, dim)
    if k_direct > 0:
        return Plan("direct", k_direct)
    raise ValueError(f"backend 'spectral': kernel {field.kernel!r} at h = {bandwidth} needs more than "
                     f"{fourier.MAX_MODES_PER_DIM} modes per dimension")
