"""2-D toy targets of the original drifting paper and of common generator benchmarks.

Registered into `targets.TARGETS` on import (the registry is assembled in `targets.py`):
- `bimodal_between`, `bimodal_far`, `bimodal_collapsed`: two equal Gaussian modes at
  (+-1.5, 0), std 0.35, with the three initialisations of the original paper's Figure 3: the
  model starts between the modes (at the origin), far from both (at (0, 4)), or collapsed onto
  one mode (at (1.5, 0)).  The initial law is N(init_loc, 0.1^2 I) for particles; a generator's
  output is offset by init_loc (its untrained output is already close to a point).
- `eight_gaussians`: eight modes on a circle of radius 2, std 0.08.
- `moons`: two interleaved half circles, scaled to about [-2, 2]^2, noise 0.06.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .modes import Mixture
from .targets import TARGETS, PlaneTarget, Target, TargetSpec

BIMODAL_CENTERS = ((-1.5, 0.0), (1.5, 0.0))
BIMODAL_STD = 0.35
INIT_STD = 0.1  # spread of the particles' initial law around init_loc
BIMODAL_INITS = {"between": (0.0, 0.0), "far": (0.0, 4.0), "collapsed": BIMODAL_CENTERS[1]}


class ToyTarget(PlaneTarget):
    """A plane target whose model starts at `init_loc` (None: the standard normal law at the origin)."""

    def __init__(self, name: str, sampler: Callable[[int, torch.Generator], torch.Tensor],
                 init_loc: Optional[tuple[float, ...]] = None, mixture: Optional[Mixture] = None) -> None:
        super().__init__(name, sampler, dim=2, mixture=mixture)
        self.init_loc = init_loc

    def init(self, n: int, gen: torch.Generator) -> torch.Tensor:
        if self.init_loc is None:
            return super().init(n, gen)
        return torch.tensor(self.init_loc) + INIT_STD * torch.randn(n, 2, generator=gen)


def equal_mixture(centers: torch.Tensor, std: float) -> Mixture:
    """The equal-weight mixture of `mixture_sampler` as the mode metrics see it."""
    k = centers.shape[0]
    return Mixture(centers.to(torch.float64), std, torch.full((k,), 1.0 / k, dtype=torch.float64))


def mixture_sampler(centers: torch.Tensor, std: float) -> Callable[[int, torch.Generator], torch.Tensor]:
    """Equal-weight Gaussian mixture with the given centers (K, 2) and isotropic std."""

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, centers.shape[0], (n,), generator=gen)
        return centers[idx] + std * torch.randn(n, 2, generator=gen)

    return sample


def _bimodal(init: str) -> Callable[[TargetSpec], Target]:
    def make(spec: TargetSpec) -> Target:
        centers = torch.tensor(BIMODAL_CENTERS)
        return ToyTarget(f"bimodal_{init}", mixture_sampler(centers, BIMODAL_STD), BIMODAL_INITS[init],
                         equal_mixture(centers, BIMODAL_STD))

    make.__doc__ = f"Two Gaussian modes at (+-1.5, 0), std {BIMODAL_STD}; the model starts {init} (Figure 3)."
    return make


for _init in BIMODAL_INITS:
    TARGETS.add(f"bimodal_{_init}", _bimodal(_init))


@TARGETS.register("eight_gaussians")
def eight_gaussians(spec: TargetSpec) -> Target:
    """Eight Gaussian modes of std 0.08 on the circle of radius 2."""
    angles = torch.arange(8, dtype=torch.float32) * (2.0 * math.pi / 8)
    centers = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)  # (8, 2)
    return ToyTarget("eight_gaussians", mixture_sampler(centers, 0.08), mixture=equal_mixture(centers, 0.08))


@TARGETS.register("moons")
def moons(spec: TargetSpec) -> Target:
    """Two interleaved half circles (radius 1, offset (1, 0.5)), centred, scaled by 1.2, noise 0.06."""

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        t = math.pi * torch.rand(n, generator=gen)
        lower = torch.rand(n, generator=gen) < 0.5
        x = torch.where(lower, 1.0 - t.cos(), t.cos())
        y = torch.where(lower, 0.5 - t.sin(), t.sin())
        pts = torch.stack([x - 0.5, y - 0.25], 1) * 1.2
        return pts + 0.06 * torch.randn(n, 2, generator=gen)

    return ToyTarget("moons", sample)
