"""One update step per model kind: how a trial turns this step's drift into a move.

`Particles`: the McKean-Vlasov particle system, x <- x + dt V (or, in the no-stop-gradient ablation, the
same step size along -grad E|V|^2).  `Generators`: Adam on the drift loss with a linear warm-up, and an
EMA of the weights that the evaluations use.  Both expose `draw(gen)` (this step's samples and negatives),
`samples(noise)` (what an evaluation measures) and `update(loss, v, x, step)`.
"""

from __future__ import annotations

import copy
import math
from typing import Optional

import torch

from .core.generators import Generator
from .spine.config import TrialConfig


def ema_decay(ema: float, step: int) -> float:
    """EMA decay at step s: min(ema, (1 + s) / (10 + s)), so early weights are not remembered for long."""
    return min(ema, (1.0 + step) / (10.0 + step))


class Particles:
    """The particle system: the samples are the state."""

    def __init__(self, cfg: TrialConfig, net: Generator) -> None:
        self.cfg, self.net = cfg, net

    def draw(self, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """This step's samples (the particles) and negatives (None: the samples themselves)."""
        return self.net.x, None

    def samples(self, noise: torch.Tensor) -> torch.Tensor:
        """The current law's samples (the particles)."""
        with torch.no_grad():
            return self.net(noise)

    def update(self, loss: torch.Tensor, v: torch.Tensor, x: torch.Tensor, step: int) -> None:
        """x <- x + dt V; without the stop-gradient x <- x - (dt N / 2) grad, the same step size."""
        if self.cfg.stop_gradient:
            self.net.euler_step_(v, self.cfg.dt)
        else:
            (grad,) = torch.autograd.grad(loss, x)
            self.net.euler_step_(-0.5 * self.cfg.n_samples * grad, self.cfg.dt)


class Generators:
    """A one-step generator trained by Adam on the drift loss, evaluated through an EMA of its weights."""

    def __init__(self, cfg: TrialConfig, net: Generator) -> None:
        self.cfg, self.net = cfg, net
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        self.ema = copy.deepcopy(net).requires_grad_(False) if cfg.ema > 0 else None
        self.stratified = cfg.noise_sampler == "stratified"

    def draw(self, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """This step's generated batch and, when n_neg asks for one, a separate negative batch (no gradient)."""
        x = self.net(self.net.noise(self.cfg.n_samples, gen, self.stratified).to(device))
        if self.cfg.n_neg <= 0:
            return x, None
        with torch.no_grad():
            return x, self.net(self.net.noise(self.cfg.n_neg, gen, self.stratified).to(device))

    def samples(self, noise: torch.Tensor) -> torch.Tensor:
        """Samples of the evaluated generator (the EMA weights when there are)."""
        with torch.no_grad():
            return (self.ema if self.ema is not None else self.net)(noise)

    def update(self, loss: torch.Tensor, v: torch.Tensor, x: torch.Tensor, step: int) -> None:
        """One Adam step (learning rate `lr_factor` x lr), then the EMA."""
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * lr_factor(self.cfg, step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ema is not None:
            with torch.no_grad():
                decay = ema_decay(self.cfg.ema, step)
                for pe, p in zip(self.ema.parameters(), self.net.parameters()):
                    pe.lerp_(p, 1.0 - decay)


def lr_factor(cfg: TrialConfig, step: int) -> float:
    """The learning rate's factor at `step` (0-based): a linear warm-up over `warmup_steps`, then `lr_decay`
    (cosine: from 1 after the warm-up down to 0 at the budget)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_decay == "none":
        return warm
    span = max(1, cfg.steps - cfg.warmup_steps)
    done = min(1.0, max(0, step + 1 - cfg.warmup_steps) / span)
    return warm * 0.5 * (1.0 + math.cos(math.pi * done))


def stepper(cfg: TrialConfig, net: Generator) -> "Particles | Generators":
    """The update step of the trial's model kind."""
    return Particles(cfg, net) if net.particle_system else Generators(cfg, net)
