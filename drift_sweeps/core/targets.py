"""Target distributions: one registry of factories, one `Target` interface.

Factory signature: ``factory(spec: TargetSpec) -> Target``.  Torus targets live on
[0, 2pi)^D with exact Fourier coefficients; plane targets on R^2 have none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from .geometry import TWO_PI
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


class Target:
    """A distribution to sample from, with optional exact Fourier coefficients."""

    name: str = "target"
    dim: int = 2
    periodic: bool = False
    image_side: int = 0  # square images: side length (dim = side^2); 0 otherwise
    init_loc: Optional[tuple[float, ...]] = None  # where a model starts (a generator's output offset), None: origin

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n exact i.i.d. samples.  -> (n, D)."""
        raise NotImplementedError

    def sample_stratified(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n low-discrepancy samples with the exact law marginally; defaults to i.i.d."""
        return self.sample(n, gen)

    def init(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Initial particles / generator noise law: uniform on the torus, N(0, I) on the plane."""
        if self.periodic:
            return TWO_PI * _stratified_unit(n, self.dim, gen)
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


def _stratified_unit(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """Low-discrepancy points in [0,1)^dim: jittered strata in 1-D, scrambled Sobol otherwise."""
    if dim == 1:
        u = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=gen, dtype=torch.float64)) / n
        return u[torch.randperm(n, generator=gen)].unsqueeze(1)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)


class PeriodicTarget(Target):
    """p(x) = (1 + sum_m a_m cos(m.x + phi_m)) / (2pi)^D on the torus (docs/theory.md#torus-targets)."""

    periodic = True

    def __init__(self, name: str, modes: torch.Tensor, amplitudes: torch.Tensor, phases: torch.Tensor) -> None:
        self.name = name
        self.modes = modes.to(torch.float64)  # (F, D)
        self.amps = amplitudes.to(torch.float64)  # (F,)
        self.phases = phases.to(torch.float64)  # (F,)
        self.dim = modes.shape[1]

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
        """Rosenblatt transform of low-discrepancy uniforms through closed-form CDFs."""
        u = _stratified_unit(n, self.dim, gen)  # (n, D)
        x1 = self._invert(lambda s: self._cdf_first(s), u[:, 0])
        if self.dim == 1:
            return x1.unsqueeze(1).float()
        x2 = self._invert(lambda s: self._cdf_second(x1, s), u[:, 1])
        return torch.stack([x1, x2], 1).float()

    @staticmethod
    def _invert(cdf: Callable[[torch.Tensor], torch.Tensor], u: torch.Tensor) -> torch.Tensor:
        lo, hi = torch.zeros_like(u), torch.full_like(u, TWO_PI)
        for _ in range(30):  # bisection to 2pi / 2^30 ~ 6e-9, below float32 resolution of the output
            mid = 0.5 * (lo + hi)
            below = cdf(mid) < u
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def _cdf_first(self, s: torch.Tensor) -> torch.Tensor:
        """Marginal CDF of x_1 (only modes with m_2 = 0 survive the marginalisation)."""
        keep = self.modes[:, 1] == 0 if self.dim == 2 else torch.ones(len(self.modes), dtype=torch.bool)
        m, a, ph = self.modes[keep, 0], self.amps[keep], self.phases[keep]  # (F',)
        arg = s.unsqueeze(1) * m + ph  # (n, F')
        return (s + ((torch.sin(arg) - torch.sin(ph)) * (a / m)).sum(1)) / TWO_PI

    def _cdf_second(self, x1: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Conditional CDF of x_2 given x_1."""
        m1, m2 = self.modes[:, 0], self.modes[:, 1]  # (F,)
        base = x1.unsqueeze(1) * m1 + self.phases  # (n, F)
        flat = m2 == 0
        safe_m2 = torch.where(flat, torch.ones_like(m2), m2)
        along = torch.where(flat, s.unsqueeze(1) * torch.cos(base),
                            (torch.sin(base + s.unsqueeze(1) * m2) - torch.sin(base)) / safe_m2)  # (n, F)
        num = s + (self.amps * along).sum(1)
        den = TWO_PI + (self.amps * torch.where(flat, TWO_PI * torch.cos(base), torch.zeros_like(base))).sum(1)
        return num / den


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
    """A 2-D set on the plane given by an exact sampler."""

    periodic = False

    def __init__(self, name: str, sampler: Callable[[int, torch.Generator], torch.Tensor], dim: int = 2) -> None:
        self.name, self._sampler, self.dim = name, sampler, dim

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

    return PlaneTarget("gaussian_grid", sample)


@TARGETS.register("swiss_roll")
def swiss_roll(spec: TargetSpec) -> Target:
    """2-D swiss roll scaled to about [-2, 2]^2 with small Gaussian noise."""

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n, generator=gen))
        pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 7.0
        return pts + 0.05 * torch.randn(n, 2, generator=gen)

    return PlaneTarget("swiss_roll", sample)


def load_array(path: str) -> torch.Tensor:
    """(N, D) float array from .npy or Parquet (every numeric column); clear errors otherwise."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"target_path {path!r} does not exist")
    if p.suffix == ".npy":
        import numpy as np  # optional: only the file target needs numpy

        arr = torch.as_tensor(np.load(p), dtype=torch.float32)
    elif p.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq  # optional: only the file target needs pyarrow

        table = pq.read_table(p)
        cols = [c for c, t in zip(table.column_names, table.schema.types) if str(t).startswith(("float", "double", "int"))]
        if not cols:
            raise ValueError(f"{path}: no numeric columns")
        arr = torch.stack([torch.as_tensor(table[c].to_numpy(), dtype=torch.float32) for c in cols], 1)
    else:
        raise ValueError(f"target_path {path!r}: expected a .npy or .parquet file")
    if arr.ndim == 1:
        arr = arr.unsqueeze(1)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(f"{path}: expected an (N, D) array with N >= 2, got shape {tuple(arr.shape)}")
    if not torch.isfinite(arr).all():
        raise ValueError(f"{path}: contains non-finite values")
    return arr


@TARGETS.register("file")
def file_target(spec: TargetSpec) -> Target:
    """Empirical distribution of a user's (N, D) array; sampling draws rows with replacement."""
    if not spec.path:
        raise ValueError("target 'file' needs target_path (a .npy or .parquet file)")
    data = load_array(spec.path)

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        return data[torch.randint(0, data.shape[0], (n,), generator=gen)]

    return PlaneTarget("file", sample, dim=data.shape[1])
