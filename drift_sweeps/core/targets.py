"""Target distributions: one registry of factories, one `Target` interface.

Factory signature: ``factory(spec: TargetSpec) -> Target``.  Torus targets live on
[0, 2pi)^D with exact Fourier coefficients; plane targets on R^D have none.  Targets that are Gaussian
mixtures with known modes expose them as `Target.mixture` (centres, std, weights) for the mode metrics
(`core.modes`); the mixture family itself is `core.mixture`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .geometry import TWO_PI
from .modes import Mixture
from .target_file import read_target_file
from ..spine.registry import Registry
from ..spine.torus import TORUS_DIMS, lowest_mode, mode_vectors


@dataclass(frozen=True)
class TargetSpec:
    """Target parameters taken from the trial config."""

    k_max: int = 4
    k_min: int = 1
    amplitude: float = 0.8  # total amplitude sum_k |a_k| (< 1 keeps the density positive)
    phase: str = "random"  # "random" (drawn from target_seed) or "zero"
    target_seed: int = 0
    path: Optional[str] = None  # for `file`
    modes: str = "band"  # torus: "band" carries k_min..k_max, "single" only k_max
    # the mixture family (core.mixture); spine/config.py defines and documents each key
    dim: int = 2
    n_modes: int = 2
    layout: str = "line"
    separation: float = 3.0
    mode_std: float = 0.35
    mode_weights: tuple[float, ...] = ()
    init: str = "default"
    init_weights: tuple[float, ...] = ()


class Target:
    """A distribution to sample from, with optional exact Fourier coefficients."""

    name: str = "target"
    dim: int = 2
    periodic: bool = False
    image_side: int = 0  # square images: side length (dim = side^2); 0 otherwise
    init_loc: Optional[tuple[float, ...]] = None  # where a model starts (a generator's output offset), None: origin
    mixture: Optional[Mixture] = None  # the target as a Gaussian mixture with known modes, None otherwise

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n exact i.i.d. samples.  -> (n, D)."""
        raise NotImplementedError

    def sample_stratified(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n low-discrepancy samples with the exact law marginally; defaults to i.i.d."""
        return self.sample(n, gen)

    def init(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Initial particles / generator noise law: uniform on the torus, N(0, I) on the plane."""
        if self.periodic:
            return TWO_PI * stratified_unit(n, self.dim, gen)
        return torch.randn(n, self.dim, generator=gen)

    def active_modes(self) -> Optional[torch.Tensor]:
        """Integer frequency vectors carrying the target's structure (F, D), or None."""
        return None

    def fourier(self, freqs: torch.Tensor) -> Optional[torch.Tensor]:
        """Exact E_p[exp(i k.x)] for integer freqs (F, D) -> complex (F,), or None if unknown."""
        return None

    def density(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """Density at x (n, D), or None where no closed form exists."""
        return None


TargetFactory = Callable[[TargetSpec], Target]
TARGETS: Registry[TargetFactory] = Registry("target")


LATTICE_BOX_VECTORS = 20000  # Korobov search: integer vectors checked per candidate multiplier ((2B+1)^D <= this)
LATTICE_CANDIDATES = 128  # Korobov search: candidate multipliers tried
INVERT_STEPS = 40  # inverse CDF: Newton or bisection steps at most ...
INVERT_TOL = 1e-12  # ... stopping once no point moves more than this (float64; the samples are float32)
INVERT_BLOCK = 4096  # points inverted together (their (modes, points) tables stay in cache-sized memory)


def stratified_unit(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """Low-discrepancy points in [0,1)^dim, each marginally uniform: jittered strata in 1-D, scrambled Sobol
    in 2-D, a randomly shifted rank-1 lattice in 3-D and above (`lattice_unit`)."""
    if dim == 1:
        u = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=gen, dtype=torch.float64)) / n
        return u[torch.randperm(n, generator=gen)].unsqueeze(1)
    if dim == 2:
        return sobol_unit(n, dim, gen)
    return lattice_unit(n, dim, gen)


def sobol_unit(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """n scrambled Sobol points in [0,1)^dim, the scrambling seeded from gen.  -> (n, dim) float64."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)


@functools.lru_cache(maxsize=64)
def korobov_vector(n: int, dim: int) -> tuple[int, ...]:
    """Generating vector z = (1, a, a^2, ...) mod n of an n-point rank-1 lattice: among LATTICE_CANDIDATES
    multipliers a (a golden-ratio sequence in 1..n-1, deterministic), the one whose shortest nonzero dual
    vector (m with m.z = 0 mod n, the only frequencies the lattice aliases) is longest, searched in the
    box |m_i| <= B with (2B+1)^dim <= LATTICE_BOX_VECTORS."""
    b = max(1, int((LATTICE_BOX_VECTORS ** (1.0 / dim) - 1) / 2))
    side = torch.arange(-b, b + 1)
    m = torch.cartesian_prod(*([side] * dim)).reshape(-1, dim)
    m = m[(m != 0).any(1)]  # (V, D)
    norm = m.to(torch.float64).norm(dim=1)
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    best, best_a = -1.0, 1
    for i in range(1, LATTICE_CANDIDATES + 1):
        a = max(1, int(n * ((i * golden) % 1.0)))
        z = torch.tensor([pow(a, j, n) for j in range(dim)], dtype=torch.long)
        dual = (m @ z) % n == 0
        shortest = float(norm[dual].min()) if bool(dual.any()) else math.inf
        if shortest > best:
            best, best_a = shortest, a
        if math.isinf(shortest):  # no aliased frequency in the whole box
            break
    return tuple(pow(best_a, j, n) for j in range(dim))


def lattice_unit(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """A rank-1 lattice {i z / n} shifted by a uniform random vector (mod 1), in random order: every point is
    uniform marginally, and a smooth periodic integrand's error is only its Fourier content at the dual
    lattice (|m| beyond the search box for large n), far below Sobol's in 3-D.  -> (n, dim) float64."""
    z = torch.tensor(korobov_vector(n, dim), dtype=torch.long)
    shift = torch.rand(dim, generator=gen, dtype=torch.float64)
    u = torch.remainder((torch.arange(n, dtype=torch.long).unsqueeze(1) * z % n) / n + shift, 1.0)  # (n, D)
    return u[torch.randperm(n, generator=gen)]


class PeriodicTarget(Target):
    """p(x) = (1 + sum_m a_m cos(m.x + phi_m)) / (2pi)^D on the torus (docs/theory.md#torus-targets)."""

    periodic = True

    def __init__(self, name: str, modes: torch.Tensor, amplitudes: torch.Tensor, phases: torch.Tensor) -> None:
        self.name = name
        self.modes = modes.to(torch.float64)  # (F, D)
        self.amps = amplitudes.to(torch.float64)  # (F,)
        self.phases = phases.to(torch.float64)  # (F,)
        self.dim = modes.shape[1]
        self._parts: dict[int, dict[str, torch.Tensor]] = {}  # _cdf_parts, per coordinate

    def active_modes(self) -> torch.Tensor:
        return self.modes.round().long()

    def density(self, x: torch.Tensor) -> torch.Tensor:
        arg = x.to(torch.float64) @ self.modes.T + self.phases  # (n, F)
        return (1.0 + (self.amps * torch.cos(arg)).sum(1)) / TWO_PI**self.dim

    def fourier(self, freqs: torch.Tensor) -> torch.Tensor:
        f = freqs.to(torch.float64)
        match = (f.unsqueeze(1) == self.modes.unsqueeze(0)).all(-1).to(torch.float64)  # (F', F)
        anti = (f.unsqueeze(1) == -self.modes.unsqueeze(0)).all(-1).to(torch.float64)
        # E_p exp(i k.x) = a_m/2 exp(-i phi_m) at k = m, a_m/2 exp(+i phi_m) at k = -m
        re = (match + anti) @ (0.5 * self.amps * torch.cos(self.phases))
        im = (anti - match) @ (0.5 * self.amps * torch.sin(self.phases))
        return torch.complex(re, im)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        bound = 1.0 + self.amps.abs().sum()
        out, have = [], 0
        while have < n:  # rejection from the uniform law: exact, acceptance >= 1/bound
            x = TWO_PI * torch.rand(2 * (n - have) + 16, self.dim, generator=gen, dtype=torch.float64)
            keep = torch.rand(x.shape[0], generator=gen, dtype=torch.float64) * bound < self.density(x) * TWO_PI**self.dim
            out.append(x[keep])
            have += int(keep.sum())
        return torch.cat(out)[:n].float()

    def sample_stratified(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Rosenblatt transform of low-discrepancy uniforms through closed-form conditional CDFs."""
        return torch.cat([self._rosenblatt(block) for block in stratified_unit(n, self.dim, gen).split(INVERT_BLOCK)])

    def _rosenblatt(self, u: torch.Tensor) -> torch.Tensor:
        """Uniforms u (n, D) -> points (n, D) float32, one coordinate at a time through its conditional CDF."""
        xs: list[torch.Tensor] = []
        for j in range(self.dim):
            prefix = torch.stack(xs, 1) if xs else u.new_zeros(u.shape[0], 0)  # (n, j): the coordinates drawn so far
            xs.append(self._invert(self._conditional_cdf(prefix), u[:, j].contiguous()))
        return torch.stack(xs, 1).float()

    @staticmethod
    def _invert(cdf_pdf: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], u: torch.Tensor) -> torch.Tensor:
        """The s in [0, 2pi) with CDF(s) = u: Newton's steps from the uniform law's inverse, each kept inside the
        bracket the earlier evaluations set (bisection where a step leaves it: a density near 0), until no step
        moves more than INVERT_TOL (5-7 evaluations where bisection to float32 resolution took 30)."""
        lo, hi = torch.zeros_like(u), torch.full_like(u, TWO_PI)
        s = TWO_PI * u
        for _ in range(INVERT_STEPS):
            cdf, pdf = cdf_pdf(s)
            below = cdf < u
            lo, hi = torch.where(below, s, lo), torch.where(below, hi, s)
            step = (cdf - u) / pdf.clamp_min(1e-300)
            new = s - step
            s = torch.where((new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
            if float(step.abs().max()) < INVERT_TOL:
                break
        return s

    def _conditional_cdf(self, prefix: torch.Tensor) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """s -> (CDF, density) at s of coordinate j = prefix.shape[1] given the earlier ones (prefix (n, j)); only
        the modes with m_{j+1..D} = 0 survive the marginalisation over the later coordinates.

        A mode with m_j = v != 0 and phase b (its part fixed by the prefix) adds a (sin(b + v s) - sin b) / v =
        a sin(b) / v (cos(v s) - 1) + a cos(b) / v sin(v s) to the CDF's numerator; summed per |v| = k (sin is
        odd in v) into P_k and Q_k, fixed during the inversion.  An evaluation then needs cos(k s), sin(k s) for
        k <= max|v| only, not for every mode: on the 2-D torus at K_max = 16, 16 sines and cosines per point
        instead of 64 (a draw of 65536 points 1.6-2.7 -> 0.22-0.27 s, one thread)."""
        j = prefix.shape[1]
        parts = self._cdf_parts(j)
        cos_base, sin_base = _mode_phases(prefix, parts["prefix_modes"], parts["phases"])  # (F', n or 1)
        linear = parts["flat"] @ cos_base  # (n or 1,): the flat modes' slope
        den = TWO_PI * (1.0 + linear)
        p_k, q_k = parts["to_p"] @ sin_base, parts["to_q"] @ cos_base  # (K, n or 1)
        weights = torch.cat([p_k, q_k]).expand(-1, prefix.shape[0])  # against [cos(k s); sin(k s)] ...
        slopes = torch.cat([parts["k"] * q_k, -parts["k"] * p_k]).expand(-1, prefix.shape[0])  # ... and d/ds
        offset = p_k.sum(0)

        def cdf_pdf(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            arg = parts["k"] * s  # (K, n)
            table = torch.cat([torch.cos(arg), torch.sin(arg)])
            along = s * linear + (table * weights).sum(0) - offset
            slope = linear + (table * slopes).sum(0)
            return (s + along) / den, (1.0 + slope) / den

        return cdf_pdf

    def _cdf_parts(self, j: int) -> dict[str, torch.Tensor]:
        """What coordinate j's conditional CDF needs of the modes, whatever the points (cached per j): the
        surviving modes' earlier coordinates and phases, the flat modes' amplitudes, and the (K, F') maps from
        a mode to its P_k and Q_k (a / v and a / |v| in row |v|)."""
        cache = self._parts
        if j not in cache:
            keep = (self.modes[:, j + 1:] == 0).all(1)  # (F,)
            m_j, a = self.modes[keep, j], self.amps[keep]  # (F',)
            flat = m_j == 0
            order = m_j.abs().round().long()
            top = max(int(order.max()) if order.numel() else 0, 1)
            rows, cols = (order - 1).clamp_min(0), torch.arange(order.numel())
            to_k = torch.zeros(top, order.numel(), dtype=torch.float64)
            cache[j] = {
                "prefix_modes": self.modes[keep, :j], "phases": self.phases[keep],
                "flat": torch.where(flat, a, 0.0),
                "to_p": to_k.index_put((rows, cols), torch.where(flat, 0.0, a / torch.where(flat, 1.0, m_j))),
                "to_q": to_k.index_put((rows, cols), torch.where(flat, 0.0, a / m_j.abs().clamp_min(1.0))),
                "k": torch.arange(1, top + 1, dtype=torch.float64).unsqueeze(1),
            }
        return cache[j]


def _cos_sin(x: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos(k x), sin(k x) for 0 <= k <= top, x (n,) -> two (top + 1, n) tables."""
    arg = torch.arange(top + 1, dtype=x.dtype, device=x.device).unsqueeze(1) * x
    return torch.cos(arg), torch.sin(arg)


def _mode_phases(prefix: torch.Tensor, modes: torch.Tensor, phases: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of m.x + phi for each mode (F', j) and point of prefix (n, j) -> two (F', n) tables ((F', 1) for
    j = 0), from each coordinate's `_cos_sin` table by angle addition."""
    re, im = torch.cos(phases).unsqueeze(1), torch.sin(phases).unsqueeze(1)
    for d in range(prefix.shape[1]):
        m = modes[:, d].round().long()
        top = int(m.abs().max()) if m.numel() else 0
        if top:
            cos_d, sin_d = _cos_sin(prefix[:, d].contiguous(), top)
            c, s = cos_d[m.abs()], sin_d[m.abs()] * m.sign().to(torch.float64).unsqueeze(1)
            re, im = re * c - im * s, re * s + im * c
    return re, im


def _periodic(name: str, dim: int) -> TargetFactory:
    def make(spec: TargetSpec) -> Target:
        k_low = lowest_mode(spec.k_min, spec.k_max, spec.modes)
        modes = torch.tensor(mode_vectors(dim, k_low, spec.k_max), dtype=torch.long)  # (F, D)
        gen = torch.Generator().manual_seed(spec.target_seed)
        amps = torch.full((modes.shape[0],), spec.amplitude / modes.shape[0], dtype=torch.float64)
        if spec.phase == "random":
            phases = TWO_PI * torch.rand(modes.shape[0], generator=gen, dtype=torch.float64)
        else:
            phases = torch.zeros(modes.shape[0], dtype=torch.float64)
        return PeriodicTarget(name, modes, amps, phases)

    return make


for _name, _dim in TORUS_DIMS.items():
    TARGETS.add(_name, _periodic(_name, _dim))


class PlaneTarget(Target):
    """A set on the plane R^D (2-D unless said) given by an exact sampler, with its modes where known."""

    periodic = False

    def __init__(self, name: str, sampler: Callable[[int, torch.Generator], torch.Tensor], dim: int = 2,
                 mixture: Optional[Mixture] = None) -> None:
        self.name, self._sampler, self.dim, self.mixture = name, sampler, dim, mixture

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self._sampler(n, gen).float()


@TARGETS.register("checkerboard")
def checkerboard(spec: TargetSpec) -> Target:
    """Uniform on the black cells of a K_max x K_max board over [-2, 2]^2 (K_max >= 2)."""
    cells = max(spec.k_max, 2)

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        out, have = [], 0
        while have < n:
            u = torch.rand(2 * (n - have) + 16, 2, generator=gen)
            idx = torch.floor(u * cells).long()
            keep = (idx.sum(1) % 2) == 0
            out.append(u[keep])
            have += int(keep.sum())
        return 4.0 * torch.cat(out)[:n] - 2.0

    return PlaneTarget("checkerboard", sample)


@TARGETS.register("gaussian_grid")
def gaussian_grid(spec: TargetSpec) -> Target:
    """Equal mixture of K_max x K_max Gaussians on a grid over [-2, 2]^2, std = spacing / 6."""
    g = spec.k_max
    centers = torch.linspace(-2.0, 2.0, g) if g > 1 else torch.zeros(1)
    grid = torch.cartesian_prod(centers, centers).reshape(-1, 2)  # (g*g, 2)
    std = (4.0 / max(g - 1, 1)) / 6.0

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, grid.shape[0], (n,), generator=gen)
        return grid[idx] + std * torch.randn(n, 2, generator=gen)

    weights = torch.full((grid.shape[0],), 1.0 / grid.shape[0], dtype=torch.float64)
    return PlaneTarget("gaussian_grid", sample, mixture=Mixture(grid.to(torch.float64), std, weights))


@TARGETS.register("swiss_roll")
def swiss_roll(spec: TargetSpec) -> Target:
    """2-D swiss roll scaled to about [-2, 2]^2 with small Gaussian noise."""

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=gen))
        pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 7.0
        return pts + 0.05 * torch.randn(n, 2, generator=gen)

    return PlaneTarget("swiss_roll", sample)


def load_array(path: str) -> torch.Tensor:
    """(N, D) float32 tensor of a target file (`core.target_file` holds the rule and its error messages)."""
    return torch.from_numpy(read_target_file(path))


@TARGETS.register("file")
def file_target(spec: TargetSpec) -> Target:
    """Empirical distribution of a user's (N, D) array; sampling draws rows with replacement."""
    if not spec.path:
        raise ValueError("target 'file' needs target_path (a .npy or .parquet file)")
    data = load_array(spec.path)

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        return data[torch.randint(0, data.shape[0], (n,), generator=gen)]

    return PlaneTarget("file", sample, dim=data.shape[1])
