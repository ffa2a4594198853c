"""Generators: one registry, one build signature.  A new architecture is one `GENERATORS` entry.

``GENERATORS.get(name)(spec, gen) -> Generator``: `spec` (a `GeneratorSpec`) says what the
samples are (dimension, torus or plane, image side) and the network's size; `gen` is the
torch.Generator every random draw of the build comes from (weights and initial particles:
no global seeding).  A `Generator` is a torch module that draws its own noise,
``noise(n, gen, stratified) -> z`` (on the CPU; the caller moves it), and maps it to samples,
``forward(z) -> (n, dim)``.  ``stratified=True`` asks for low-discrepancy noise (scrambled
Sobol points through the inverse normal CDF): the evaluation uses it so that the generator's
law is measured by quasi-Monte-Carlo rather than hidden under a 1/sqrt(n) sampling floor,
exactly as the data draws are.

Entries:
- `particles`: the McKean-Vlasov particle system itself; its parameters are the N particles,
  `particle_system = True` tells the trial to move them by x <- x + dt V rather than by Adam.
- `mlp`: SiLU MLP on Gaussian noise (the generator the particle law was first compared with).
- `fourier`: a periodic Fourier-feature MLP.  On the torus the noise is a uniform angle
  theta in [0, 2pi)^D and the output is theta + g(sin j theta, cos j theta), j = 1..F, wrapped
  to the cell: a deformation of the identity map of the torus (every smooth positive density
  on the torus is such a push-forward of the uniform law), which starts at the uniform law and
  needs no low-pass MLP to build the target's high harmonics.  On the plane it is an MLP on
  random Fourier features sin/cos(B z) of Gaussian noise.
- `resmlp`: residual MLP blocks with LayerNorm (a common toy/real-data generator).
- `conv`: a small upsampling convolutional generator for square images (dim = side^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .geometry import TWO_PI, wrap
from ..spine.registry import Registry


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator produces and how large it is (filled from the trial config and the target)."""

    dim: int  # sample dimension D
    periodic: bool = False  # samples live on the torus [0, 2pi)^D
    noise_dim: int = 8  # Gaussian noise dimension (fourier on the torus: D angles + noise_dim - D Gaussians)
    hidden: int = 128  # width (channels for conv)
    layers: int = 3  # hidden layers (residual blocks for resmlp, conv layers for conv)
    fourier_features: int = 8  # fourier: harmonics per angle (torus) or random features (plane)
    image_side: int = 0  # conv: side of the square image (dim = side^2); 0 = samples are not images
    n_particles: int = 1024  # particles: the system's size
    offset: tuple[float, ...] = ()  # plane: the initial location added to every output (empty = origin)
    init_particles: Optional[Callable[[int, torch.Generator], torch.Tensor]] = None  # particles: initial law


class Generator(torch.nn.Module):
    """A sampler with its own noise law: noise(n, gen, stratified) -> z, forward(z) -> (n, dim)."""

    particle_system = False  # True: the parameters are the samples (moved by Euler steps, not Adam)

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.dim, self.periodic = spec.dim, spec.periodic
        off = torch.zeros(spec.dim) if not spec.offset else torch.tensor(spec.offset, dtype=torch.float32)
        self.register_buffer("offset", off)  # (D,)

    def noise(self, n: int, gen: torch.Generator, stratified: bool = False) -> torch.Tensor:
        """n noise vectors (CPU)."""
        raise NotImplementedError

    def place(self, out: torch.Tensor) -> torch.Tensor:
        """Network output -> samples: wrapped into [0, 2pi)^D on the torus, shifted by the offset on the plane."""
        return wrap(out) if self.periodic else out + self.offset


@dataclass(frozen=True)
class GeneratorEntry:
    """One registered architecture: its builder and the specs it can build for."""

    build: Callable[[GeneratorSpec, torch.Generator], Generator]
    supports: Callable[[GeneratorSpec], bool] = lambda spec: True
    requirement: str = ""  # what `supports` asks for, for the error message

    def __call__(self, spec: GeneratorSpec, gen: torch.Generator) -> Generator:
        if not self.supports(spec):
            raise ValueError(f"generator {self.build.__name__!r} needs {self.requirement}; got {spec}")
        return self.build(spec, gen)


GENERATORS: Registry[GeneratorEntry] = Registry("generator")


def gaussian_noise(n: int, d: int, gen: torch.Generator, stratified: bool) -> torch.Tensor:
    """(n, d) standard normals; stratified: scrambled Sobol points through the inverse normal CDF."""
    return normal_from_uniform(uniform_noise(n, d, gen, stratified))


def uniform_noise(n: int, d: int, gen: torch.Generator, stratified: bool) -> torch.Tensor:
    """(n, d) uniforms on [0, 1); stratified: scrambled Sobol points seeded from gen."""
    if not stratified:
        return torch.rand(n, d, generator=gen)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    return torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n, dtype=torch.float32)


def normal_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Inverse standard normal CDF, clamped away from 0 and 1."""
    return math.sqrt(2.0) * torch.erfinv(2.0 * u.clamp(1e-6, 1.0 - 1e-6) - 1.0)


def init_linear_(layer: torch.nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default Linear/Conv init (uniform +-1/sqrt(fan_in)), drawn from `gen`."""
    w = layer.weight
    fan_in = w[0].numel()
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        w.uniform_(-bound, bound, generator=gen)
        if getattr(layer, "bias", None) is not None:
            layer.bias.uniform_(-bound, bound, generator=gen)


def _init_all_(module: torch.nn.Module, gen: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            init_linear_(m, gen)


def _mlp(d_in: int, d_out: int, hidden: int, layers: int) -> torch.nn.Sequential:
    mods: list[torch.nn.Module] = []
    width = d_in
    for _ in range(layers):
        mods += [torch.nn.Linear(width, hidden), torch.nn.SiLU()]
        width = hidden
    mods.append(torch.nn.Linear(width, d_out))
    return torch.nn.Sequential(*mods)


class Particles(Generator):
    """The particle system: N particles as parameters; noise is the index of every particle."""

    particle_system = True

    def __init__(self, spec: GeneratorSpec, gen: torch.Generator) -> None:
        super().__init__(spec)
        if spec.init_particles is not None:
            x0 = spec.init_particles(spec.n_particles, gen).float()
        elif spec.periodic:
            x0 = TWO_PI * torch.rand(spec.n_particles, spec.dim, generator=gen)
        else:
            x0 = torch.randn(spec.n_particles, spec.dim, generator=gen) + self.offset
        self.x = torch.nn.Parameter(x0)  # (N, D)

    def noise(self, n: int, gen: torch.Generator, stratified: bool = False) -> torch.Tensor:
        """Every particle, whatever n: a particle system has exactly its N samples."""
        return torch.arange(self.x.shape[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.x[z]

    @torch.no_grad()
    def euler_step_(self, v: torch.Tensor, dt: float) -> None:
        """x <- x + dt V (wrapped on the torus)."""
        self.x.add_(v, alpha=dt)
        if self.periodic:
            self.x.copy_(wrap(self.x))


class MLP(Generator):
    """SiLU MLP on Gaussian noise."""

    def __init__(self, spec: GeneratorSpec, gen: torch.Generator) -> None:
        super().__init__(spec)
        self.noise_dim = spec.noise_dim
        self.net = _mlp(spec.noise_dim, spec.dim, spec.hidden, spec.layers)
        _init_all_(self, gen)

    def noise(self, n: int, gen: torch.Generator, stratified: bool = False) -> torch.Tensor:
        return gaussian_noise(n, self.noise_dim, gen, stratified)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.place(self.net(z))


class Fourier(Generator):
    """Periodic Fourier-feature MLP (torus: residual deformation of uniform angles; plane: random features)."""

    def __init__(self, spec: GeneratorSpec, gen: torch.Generator) -> None:
        super().__init__(spec)
        self.n_freq = spec.fourier_features
        if spec.periodic:
            self.n_angles = spec.dim
            self.n_gauss = max(spec.noise_dim - spec.dim, 0)
            d_in = 2 * spec.dim * self.n_freq + self.n_gauss
        else:
            self.n_angles, self.n_gauss = 0, spec.noise_dim
            # random frequencies, std 1: features resolve noise differences of order 1 and below
            self.register_buffer("freq", torch.randn(spec.noise_dim, self.n_freq, generator=gen))
            d_in = 2 * self.n_freq
        self.register_buffer("harmonics", torch.arange(1, self.n_freq + 1, dtype=torch.float32))  # (F,)
        self.net = _mlp(d_in, spec.dim, spec.hidden, spec.layers)
        _init_all_(self, gen)
        if spec.periodic:  # start exactly at the identity map: the uniform law on the torus
            torch.nn.init.zeros_(self.net[-1].weight)
            torch.nn.init.zeros_(self.net[-1].bias)

    def noise(self, n: int, gen: torch.Generator, stratified: bool = False) -> torch.Tensor:
        u = uniform_noise(n, self.n_angles + self.n_gauss, gen, stratified)
        return torch.cat([TWO_PI * u[:, : self.n_angles], normal_from_uniform(u[:, self.n_angles:])], 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.periodic:
            theta = z[:, : self.n_angles]  # (n, D)
            arg = (theta.unsqueeze(-1) * self.harmonics).flatten(1)  # (n, D F)
            feats = torch.cat([arg.sin(), arg.cos(), z[:, self.n_angles:]], 1)
            return wrap(theta + self.net(feats))
        arg = z @ self.freq  # (n, F)
        return self.place(self.net(torch.cat([arg.sin(), arg.cos()], 1)))


class _ResBlock(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.fc1, self.fc2 = torch.nn.Linear(width, width), torch.nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(torch.nn.functional.silu(self.fc1(self.norm(h))))


class ResMLP(Generator):
    """Residual MLP: input layer, `layers` LayerNorm residual blocks, output layer."""

    def __init__(self, spec: GeneratorSpec, gen: torch.Generator) -> None:
        super().__init__(spec)
        self.noise_dim = spec.noise_dim
        self.inp = torch.nn.Linear(spec.noise_dim, spec.hidden)
        self.blocks = torch.nn.Sequential(*[_ResBlock(spec.hidden) for _ in range(spec.layers)])
        self.out = torch.nn.Sequential(torch.nn.LayerNorm(spec.hidden), torch.nn.SiLU(),
                                       torch.nn.Linear(spec.hidden, spec.dim))
        _init_all_(self, gen)

    def noise(self, n: int, gen: torch.Generator, stratified: bool = False) -> torch.Tensor:
        return gaussian_noise(n, self.noise_dim, gen, stratified)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.place(self.out(self.blocks(self.inp(z))))


class Conv(Generator):
    """Upsampling convolutional generator: noise -> (C, side/2, side/2) -> upsample -> convs -> (side, side)."""

    def __init__(self, spec: GeneratorSpec, gen: torch.Generator) -> None:
        super().__init__(spec)
        self.noise_dim, self.side, ch = spec.noise_dim, spec.image_side, spec.hidden
        self.base = (self.side + 1) // 2
        self.inp = torch.nn.Linear(spec.noise_dim, ch * self.base * self.base)
        convs: list[torch.nn.Module] = []
        for _ in range(max(spec.layers - 1, 1)):
            convs += [torch.nn.Conv2d(ch, ch, 3, padding=1), torch.nn.SiLU()]
        convs.append(torch.nn.Conv2d(ch, 1, 3, padding=1))
        self.convs = torch.nn.Sequential(*convs)
        self.ch = ch
        _init_all_(self, gen)

    def noise(self, n: int, gen: torch.Generator, stratified: bool = False) -> torch.Tensor:
        return gaussian_noise(n, self.noise_dim, gen, stratified)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.silu(self.inp(z)).view(-1, self.ch, self.base, self.base)  # (n, C, b, b)
        h = torch.nn.functional.interpolate(h, size=(self.side, self.side), mode="nearest")  # (n, C, s, s)
        return self.place(self.convs(h).flatten(1))  # (n, s*s)


GENERATORS.add("particles", GeneratorEntry(Particles))
GENERATORS.add("mlp", GeneratorEntry(MLP))
GENERATORS.add("fourier", GeneratorEntry(Fourier))
GENERATORS.add("resmlp", GeneratorEntry(ResMLP))
GENERATORS.add("conv", GeneratorEntry(
    Conv, supports=lambda spec: spec.image_side >= 2 and spec.image_side**2 == spec.dim and not spec.periodic,
    requirement="square images on the plane (image_side >= 2, dim = image_side^2)",
))


def build_generator(name: str, spec: GeneratorSpec, gen: torch.Generator) -> Generator:
    """Build the registered generator `name` (KeyError names the allowed ones)."""
    return GENERATORS.get(name)(spec, gen)
