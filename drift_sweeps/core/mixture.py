"""The Gaussian-mixture target family `mixture` on R^D, with its initial laws for the model.

The target is p = sum_j p_j N(c_j, sigma^2 I_D), j = 1..K (K = n_modes, sigma = mode_std, p = mode_weights
normalised, equal when empty), D = dim in 1..16.  The centres c_j follow `layout`, with the separation L:

- `line`:   c_j = (j - (K-1)/2) L e_1, j = 0..K-1: K modes on the first axis, neighbours L apart.
- `ring`:   (D >= 2) c_j = R (cos(2 pi j/K) e_1 + sin(2 pi j/K) e_2) with R = L / (2 sin(pi/K)), so
            neighbouring modes are L apart along the chord (K = 1: the origin; K = 2: +-L/2 e_1).
- `grid`:   (D >= 2, K = g^2) c_{i g + j} = ((i - (g-1)/2) L, (j - (g-1)/2) L, 0, ...): a g x g grid of
            spacing L in the first two axes.
- `random`: K centres drawn from `target_seed`: sequentially, uniform in the cube [0, 3 L K^(1/D)]^D,
            each kept if at least L from those kept (random sequential packing), then scaled so that
            the smallest pairwise distance is exactly L.

Every layout is then centred: the mean of the centres is the origin.  So L is the distance between
neighbouring modes (line, grid: the spacing; ring: the chord; random: the smallest pairwise distance).

Initial laws of the model (`init`; b denotes a point, every law but `default` has the modes' std sigma):

- `default`:    N(0, I_D), what every plane target starts from (the origin is the centres' mean).
- `between`:    N(b, sigma^2 I_D), b = (c_a + c_b)/2 the midpoint of the two modes nearest to the
                centres' mean (lowest indices on ties): for two modes their midpoint, for a ring the
                midpoint of the chord between modes 0 and 1, for a line of odd K between the middle
                mode and its lower neighbour.  K = 1: the mode itself.
- `far`:        N(b, sigma^2 I_D), b = (R_max + 2 L) e, e = e_2 (e_1 in 1-D), R_max the largest distance
                of a mode from the origin: on one side of the modes, at least 2 L from each of them.
- `collapsed`:  N(c_j, sigma^2 I_D) for the mode j of largest weight (lowest index on ties): exactly
                that mode's law, all the mass on one mode.
- `imbalanced`: sum_j w_j N(c_j, sigma^2 I_D), the target's modes with the weights w = init_weights
                (normalised): e.g. [0.8, 0.2] against equal target weights.

Particles start from that law (`Target.init`); a generator's output is offset by `init_loc` = b for
`between`, `far` and `collapsed` (its untrained output is close to a point), by nothing otherwise.
Generators and particles fit the same target through `sample` / `sample_stratified`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..spine.config import MIXTURE_INITS, MIXTURE_LAYOUTS
from .modes import Mixture, normalised_weights
from .targets import TARGETS, Target, TargetSpec, sobol_unit

FAR_SEPARATIONS = 2.0  # `far` starts this many separations L beyond the outermost mode
RANDOM_BOX = 3.0  # `random`: the packing cube's side is RANDOM_BOX L K^(1/D) (jams only near 0.75 / RANDOM_BOX)
RANDOM_TRIES = 10000  # `random`: candidates per mode before giving up
UNIFORM_CLAMP = 1e-12  # stratified draws: uniforms kept this far from 0 and 1 before the inverse normal CDF


def line_centres(k: int, dim: int, separation: float) -> torch.Tensor:
    """K modes on the first axis, neighbours `separation` apart, centred.  -> (K, D) float64."""
    out = torch.zeros(k, dim, dtype=torch.float64)
    out[:, 0] = (torch.arange(k, dtype=torch.float64) - (k - 1) / 2.0) * separation
    return out


def ring_centres(k: int, dim: int, separation: float) -> torch.Tensor:
    """K modes on a circle in the first two axes with chord `separation` between neighbours.  -> (K, D)."""
    if dim < 2:
        raise ValueError("layout 'ring' needs dim >= 2")
    out = torch.zeros(k, dim, dtype=torch.float64)
    if k == 1:
        return out
    radius = separation / (2.0 * math.sin(math.pi / k))
    angles = torch.arange(k, dtype=torch.float64) * (2.0 * math.pi / k)
    out[:, 0], out[:, 1] = radius * angles.cos(), radius * angles.sin()
    return out


def grid_centres(k: int, dim: int, separation: float) -> torch.Tensor:
    """A g x g grid (K = g^2) of spacing `separation` in the first two axes, centred.  -> (K, D)."""
    g = math.isqrt(k)
    if dim < 2 or g * g != k:
        raise ValueError(f"layout 'grid' needs dim >= 2 and n_modes a square, got dim {dim}, n_modes {k}")
    side = (torch.arange(g, dtype=torch.float64) - (g - 1) / 2.0) * separation
    out = torch.zeros(k, dim, dtype=torch.float64)
    out[:, :2] = torch.cartesian_prod(side, side).reshape(k, 2)
    return out


def random_centres(k: int, dim: int, separation: float, seed: int) -> torch.Tensor:
    """K centres by random sequential packing from `seed`, scaled to smallest pairwise distance
    `separation`, centred.  -> (K, D) float64."""
    gen = torch.Generator().manual_seed(seed)
    side = RANDOM_BOX * separation * k ** (1.0 / dim)
    kept = torch.empty(0, dim, dtype=torch.float64)
    for _ in range(RANDOM_TRIES * k // 64 + 1):
        for cand in side * torch.rand(64, dim, generator=gen, dtype=torch.float64):
            if kept.shape[0] == 0 or float((kept - cand).norm(dim=1).min()) >= separation:
                kept = torch.cat([kept, cand.unsqueeze(0)])
            if kept.shape[0] == k:
                return _centred(kept * (separation / _min_distance(kept)) if k > 1 else kept)
    raise ValueError(f"layout 'random': could not place {k} modes {separation} apart in {dim}-D")


def _min_distance(c: torch.Tensor) -> float:
    d = torch.cdist(c, c) + torch.diag(torch.full((c.shape[0],), math.inf, dtype=c.dtype))  # (K, K)
    return float(d.min())


def _centred(c: torch.Tensor) -> torch.Tensor:
    return c - c.mean(0, keepdim=True)


def layout_centres(layout: str, k: int, dim: int, separation: float, seed: int = 0) -> torch.Tensor:
    """The centres of a layout (module docstring).  -> (K, D) float64, mean zero."""
    if layout == "line":
        return line_centres(k, dim, separation)
    if layout == "ring":
        return ring_centres(k, dim, separation)
    if layout == "grid":
        return grid_centres(k, dim, separation)
    if layout == "random":
        return random_centres(k, dim, separation, seed)
    raise ValueError(f"mixture layout {layout!r}; allowed: {', '.join(MIXTURE_LAYOUTS)}")


def sample_mixture(mix: Mixture, n: int, gen: torch.Generator) -> torch.Tensor:
    """n exact i.i.d. draws: a mode j with probability p_j, then N(c_j, sigma^2 I).  -> (n, D) float64."""
    comp = torch.multinomial(mix.weights, n, replacement=True, generator=gen)  # (n,)
    return mix.centres[comp] + mix.std * torch.randn(n, mix.dim, generator=gen, dtype=torch.float64)


def sample_mixture_stratified(mix: Mixture, n: int, gen: torch.Generator) -> torch.Tensor:
    """n low-discrepancy draws with the exact law marginally: scrambled Sobol points in [0,1)^(D+1), the
    first coordinate through the inverse CDF of the weights (the mode), the others through the inverse
    normal CDF (the offset from the mode).  -> (n, D) float64."""
    u = sobol_unit(n, mix.dim + 1, gen)  # (n, D + 1)
    edges = mix.weights.cumsum(0)
    comp = torch.searchsorted(edges, u[:, 0].contiguous(), right=True).clamp_max(mix.centres.shape[0] - 1)  # (n,)
    z = math.sqrt(2.0) * torch.erfinv(2.0 * u[:, 1:].clamp(UNIFORM_CLAMP, 1.0 - UNIFORM_CLAMP) - 1.0)  # (n, D)
    return mix.centres[comp] + mix.std * z


def mixture_density(mix: Mixture, x: torch.Tensor) -> torch.Tensor:
    """sum_j p_j N(x; c_j, sigma^2 I) at x (n, D).  -> (n,) float64."""
    d2 = (x.to(torch.float64).unsqueeze(1) - mix.centres.unsqueeze(0)).square().sum(-1)  # (n, K)
    log_norm = -0.5 * mix.dim * math.log(2.0 * math.pi * mix.std**2)
    return torch.logsumexp(mix.weights.log() - 0.5 * d2 / mix.std**2, dim=1).add(log_norm).exp()


def init_point(kind: str, mix: Mixture, separation: float) -> Optional[torch.Tensor]:
    """The point b of the initial laws `between`, `far`, `collapsed` (module docstring); None for the
    others.  -> (D,) float64."""
    c = mix.centres
    if kind == "between":
        # distances rounded to 1e-9 L, so that modes equally far up to round-off tie and the lowest index wins
        order = torch.argsort(torch.round((c - c.mean(0)).norm(dim=1) * (1e9 / separation)), stable=True)
        return 0.5 * (c[order[0]] + c[order[min(1, len(order) - 1)]])
    if kind == "far":
        e = torch.zeros(mix.dim, dtype=torch.float64)
        e[1 if mix.dim >= 2 else 0] = 1.0
        return (float(c.norm(dim=1).max()) + FAR_SEPARATIONS * separation) * e
    if kind == "collapsed":
        return c[int(torch.argmax(mix.weights))].clone()  # argmax: the first of equal weights
    if kind in ("default", "imbalanced"):
        return None
    raise ValueError(f"mixture init {kind!r}; allowed: {', '.join(MIXTURE_INITS)}")


class MixtureTarget(Target):
    """The Gaussian mixture `mix` on R^D with one of the initial laws of the module docstring."""

    periodic = False

    def __init__(self, mix: Mixture, init: str = "default", separation: float = 1.0,
                 init_weights: tuple[float, ...] = ()) -> None:
        self.name, self.dim, self.mixture, self.init_kind = "mixture", mix.dim, mix, init
        point = init_point(init, mix, separation)
        self.init_point = point
        self.init_loc = tuple(float(v) for v in point) if point is not None else None
        self.init_mixture: Optional[Mixture] = None
        if init == "imbalanced":
            if not init_weights:
                raise ValueError("init 'imbalanced' needs init_weights, one per mode")
            self.init_mixture = Mixture(mix.centres, mix.std, normalised_weights(init_weights, len(mix.weights)))

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return sample_mixture(self.mixture, n, gen).float()

    def sample_stratified(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return sample_mixture_stratified(self.mixture, n, gen).float()

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return mixture_density(self.mixture, x)

    def init(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """The particles' initial law `init_kind` (module docstring)."""
        if self.init_mixture is not None:
            return sample_mixture(self.init_mixture, n, gen).float()
        if self.init_point is None:
            return super().init(n, gen)
        return (self.init_point + self.mixture.std * torch.randn(n, self.dim, generator=gen,
                                                                  dtype=torch.float64)).float()


@TARGETS.register("mixture")
def mixture(spec: TargetSpec) -> Target:
    """Gaussian mixture: dim, n_modes, layout, separation, mode_std, mode_weights; initial law init."""
    centres = layout_centres(spec.layout, spec.n_modes, spec.dim, spec.separation, spec.target_seed)
    mix = Mixture(centres, float(spec.mode_std), normalised_weights(spec.mode_weights, spec.n_modes))
    return MixtureTarget(mix, spec.init, spec.separation, spec.init_weights)
