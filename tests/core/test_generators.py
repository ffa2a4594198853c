"""Contract suite over every registered generator: one build signature, shapes, determinism, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core.generators import GENERATORS, GeneratorSpec, build_generator

SPECS = {
    "torus1d": GeneratorSpec(dim=1, periodic=True, noise_dim=4, hidden=16, layers=2, n_particles=32),
    "torus2d": GeneratorSpec(dim=2, periodic=True, noise_dim=4, hidden=16, layers=2, n_particles=32),
    "plane2d": GeneratorSpec(dim=2, noise_dim=4, hidden=16, layers=2, n_particles=32, offset=(1.0, -2.0)),
    "image8x8": GeneratorSpec(dim=64, noise_dim=4, hidden=8, layers=2, image_side=8, n_particles=32),
}
CASES = [(g, s) for g in GENERATORS.names() for s in SPECS if GENERATORS.get(g).supports(SPECS[s])]


def test_every_generator_builds_for_some_spec():
    assert {g for g, _ in CASES} == set(GENERATORS.names())


@pytest.mark.parametrize("name,spec_name", CASES)
def test_contract(name, spec_name):
    spec = SPECS[spec_name]
    net = build_generator(name, spec, torch.Generator().manual_seed(0))
    assert isinstance(net, torch.nn.Module)
    for stratified in (False, True):
        z = net.noise(16, torch.Generator().manual_seed(1), stratified)
        x = net(z)
        n = spec.n_particles if net.particle_system else 16
        assert x.shape == (n, spec.dim), (stratified, x.shape)
        assert torch.isfinite(x).all()
        if spec.periodic:
            assert (x >= 0).all() and (x < 2 * math.pi + 1e-6).all()
    # one seed, one generator: the build and its noise are reproducible without global seeding
    torch.manual_seed(123)
    a = build_generator(name, spec, torch.Generator().manual_seed(0))
    torch.manual_seed(456)
    b = build_generator(name, spec, torch.Generator().manual_seed(0))
    za = a.noise(16, torch.Generator().manual_seed(1))
    zb = b.noise(16, torch.Generator().manual_seed(1))
    assert torch.equal(a(za), b(zb))
    c = build_generator(name, spec, torch.Generator().manual_seed(1))
    assert not torch.equal(a(za), c(c.noise(16, torch.Generator().manual_seed(1)))) or name == "fourier" and spec.periodic
    # every parameter receives a gradient from a loss on the samples
    loss = a(za).square().sum()
    loss.backward()
    grads = [p.grad for p in a.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", [g for g in GENERATORS.names() if g != "particles"])
def test_plane_generators_start_near_their_offset(name):
    spec = SPECS["plane2d"]
    if not GENERATORS.get(name).supports(spec):
        pytest.skip("image-only generator")
    net = build_generator(name, spec, torch.Generator().manual_seed(0))
    x = net(net.noise(512, torch.Generator().manual_seed(1))).detach()
    assert (x.mean(0) - torch.tensor(spec.offset)).norm() < 1.0


def test_stratified_noise_is_low_discrepancy():
    net = build_generator("mlp", SPECS["plane2d"], torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    strat = net.noise(1024, gen, stratified=True)
    iid = net.noise(1024, gen, stratified=False)
    # the sample mean of a stratified draw is far closer to 0 than 1/sqrt(n)
    assert strat.mean(0).abs().max() < 0.2 * iid.std() / math.sqrt(1024)
    assert abs(float(strat.std()) - 1.0) < 0.02


def test_fourier_torus_generator_starts_uniform():
    spec = GeneratorSpec(dim=1, periodic=True, noise_dim=1, hidden=16, layers=2)
    net = build_generator("fourier", spec, torch.Generator().manual_seed(0))
    z = net.noise(4096, torch.Generator().manual_seed(1), stratified=True)
    x = net(z).detach()
    for k in (1, 2, 5):  # empirical Fourier coefficients of a uniform law vanish
        assert abs(torch.exp(1j * k * x.double()).mean()) < 1e-2


def test_particles_euler_step_wraps_on_the_torus():
    net = build_generator("particles", SPECS["torus1d"], torch.Generator().manual_seed(0))
    x0 = net.x.detach().clone()
    net.euler_step_(torch.full_like(x0, 10.0), 1.0)
    assert torch.allclose(net.x.detach(), torch.remainder(x0 + 10.0, 2 * math.pi), atol=1e-5)


def test_unsupported_spec_is_refused_with_the_requirement():
    with pytest.raises(ValueError, match="square images"):
        build_generator("conv", SPECS["plane2d"], torch.Generator().manual_seed(0))
    with pytest.raises(KeyError, match="allowed"):
        build_generator("nope", SPECS["plane2d"], torch.Generator().manual_seed(0))
