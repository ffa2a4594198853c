"""The compiled near loop's plain-Python forms (numba compiles them as written; near.py calls them): for each
point, the strips of its block that come within r_c (`near.StripLayout`), in each the chord the disc leaves, and
per segment one branch-free loop over the samples that LLVM vectorises (the pairs beyond r_c and the self pair
masked, exp written as a polynomial: `_exp_neg`), run in whole vectors (`LANES`: the samples past the segment's end
masked too, no scalar remainder).  One compiled copy per kernel code, wrap flag and sum."""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional

_LOG2E = 1.0 / math.log(2.0)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 in two parts (fdlibm's)
LANES = 8  # a segment's loop runs whole vectors of this many pairs (the samples past its end masked, not a scalar
# remainder loop); the sample arrays carry LANES columns of padding
_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(13))  # 1/0!, ..., 1/12!: exp's polynomial


@functools.lru_cache(maxsize=1)
def compiled_helpers() -> bool:
    """Whether numba imports; if so the loop's helpers in this module's globals are compiled (once)."""
    from .plane_loop import compile_in

    inline = ("_wrap", "_exp_neg", "_term", "_pair", "_segment", "_segment_half")
    return compile_in(globals(), inline, ("_strip_row", "_lower", "_strip_segments"), ()) is not None


@functools.lru_cache(maxsize=None)
def compiled_loop(kcode: int = 0, wrap: bool = False, moment: bool = False) -> Optional[Callable[..., None]]:
    """`_near_loop` compiled by numba for one kernel code, wrap flag and sum (moment or gradient), or None without
    numba.  Each is a copy of the function whose last three parameters default to them and are left out of the
    call, so numba compiles them as constants (a branch-free pair loop that computes only what it sums), and
    only the copies a process uses are compiled (a few seconds each, then loaded from the disk cache next to
    this file, one file per copy).  The copies release the GIL: `near_sums` runs ranges of points on threads."""
    if not compiled_helpers():
        return None
    import types

    from .plane_loop import compile_in

    name = f"_near_loop_k{kcode}_{'wrap' if wrap else 'strips'}_{'moment' if moment else 'grad'}"
    copy = types.FunctionType(_near_loop.__code__, globals(), name, (kcode, wrap, moment))
    copy.__qualname__ = name
    return compile_in({name: copy}, (), (), (name,), nogil=True)[0]


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
    (COMPILED_KERNELS) times chi = exp(-(r / a)^8), (r / a)^8 as (r^2 / a^2)^4 and its d/dr / r, 8 r^6 / a^8, as
    products; every branch is on kcode and dim, constants where `_segment` is inlined, so the pair loop has none.
    At most one square root and one division per pair (they share one unit, the loop's narrowest)."""
    t = r2 * inv_a2
    t2 = t * t
    ra = t2 * t2
    cut = 8.0 * t2 * t * inv_a2
    if kcode == 0:  # gaussian
        g = _exp_neg(-0.5 * r2 * inv_h2 - ra)
        return g, g * (-inv_h2 - cut)
    if kcode == 1:  # laplacian
        r = math.sqrt(r2)
        g = _exp_neg(-r * inv_h - ra)
        return g, g * (-inv_h / max(r, 1e-150) - cut)
    if kcode == 2:  # cauchy: (1 + r^2/h^2)^-(d+1)/2
        iq = 1.0 / (1.0 + r2 * inv_h2)
        g = (iq if dim == 1 else (iq * math.sqrt(iq) if dim == 2 else iq * iq)) * _exp_neg(-ra)
        return g, g * (-(dim + 1) * inv_h2 * iq - cut)
    if kcode == 3:  # matern32
        v = math.sqrt(3.0 * r2) * inv_h
        g = (1.0 + v) * _exp_neg(-v - ra)
        return g, g * (-3.0 * inv_h2 / (1.0 + v) - cut)
    v = math.sqrt(5.0 * r2) * inv_h  # matern52
    q = 1.0 + v + v * v * (1.0 / 3.0)
    g = q * _exp_neg(-v - ra)
    return g, g * (-5.0 * (1.0 + v) * inv_h2 / (3.0 * q) - cut)


def _pair(kcode, wrap, dim, moment, d0, d1, d2, other, r_c2, inv_a2, inv_h, inv_h2):
    """One pair from the point minus the sample (d0, d1, d2), masked beyond r_c and where not `other` (the point's
    own pair) -> (k chi, the weight of the pair's vector: k chi (y - x) for the moment, d(k chi)/dr / r (x - y)
    for the gradient, the vector: the minimum image where wrap)."""
    if wrap:
        two_pi, inv_2pi = 2.0 * math.pi, 0.5 / math.pi
        d0 -= two_pi * np.floor(d0 * inv_2pi + 0.5)
        d1 -= two_pi * np.floor(d1 * inv_2pi + 0.5)
        d2 -= two_pi * np.floor(d2 * inv_2pi + 0.5)
    r2 = d0 * d0 + d1 * d1 + d2 * d2
    g, dg = _term(kcode, dim, r2, inv_a2, inv_h, inv_h2)
    keep = (r2 < r_c2) & other
    g = g if keep else 0.0
    return g, (-g if moment else (dg if keep else 0.0)), d0, d1, d2


def _segment(kcode, wrap, dim, moment, ys3, lo, hi, c0, c1, c2, self_j, consts):
    """A point's sums over the samples lo..hi (sorted order; ys3 (3, M), zero rows above D) from (c0, c1, c2),
    the point minus the segment's image shift: one branch-free loop (the sample self_j and the pairs beyond
    r_c masked, not skipped).  wrap: the minimum image of every pair (one strip: `StripLayout.wrap`)."""
    r_c2, inv_a2, inv_h, inv_h2 = consts[0], consts[1], consts[2], consts[3]
    s, g0, g1, g2 = 0.0, 0.0, 0.0, 0.0
    n = hi - lo
    end = lo + (n + LANES - 1) // LANES * LANES  # whole vectors: the samples past hi masked (ys3 has LANES more)
    y0, y1, y2 = ys3[0, lo:end], ys3[1, lo:end], ys3[2, lo:end]  # views indexed from 0: no negative-index
    self_t = self_j - lo  # wrap-around check on each load, so the loads are contiguous vector loads
    for t in range(end - lo):
        g, w, d0, d1, d2 = _pair(kcode, wrap, dim, moment, c0 - y0[t], c1 - y1[t], c2 - y2[t],
                                 (t != self_t) & (t < n), r_c2, inv_a2, inv_h, inv_h2)
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
    s, g0, g1, g2 = 0.0, 0.0, 0.0, 0.0
    n = hi - lo
    end = lo + (n + LANES - 1) // LANES * LANES  # whole vectors, as `_segment` (acc, too, has LANES more)
    y0, y1, y2 = ys3[0, lo:end], ys3[1, lo:end], ys3[2, lo:end]
    a_s, a0, a1, a2 = acc[0, lo:end], acc[1, lo:end], acc[2, lo:end], acc[3, lo:end]
    for t in range(end - lo):
        g, w, d0, d1, d2 = _pair(kcode, wrap, dim, moment, c0 - y0[t], c1 - y1[t], c2 - y2[t], t < n,
                                 r_c2, inv_a2, inv_h, inv_h2)
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
    self pair).  self_pairs 2: the samples are the points, each pair read once from the end earlier in sorted
    order (the strips after the point's own, and its own after its place), the far end's terms added into acc
    (`_segment_half`).  A segment's periodic image is one shift per axis (-2 pi, 0 or 2 pi), so a pair needs no
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
