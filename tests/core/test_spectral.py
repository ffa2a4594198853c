"""The spectral (NUFFT) torus backend against a float64 brute-force image sum, for every kernel.

The acceptance bar: meanshift, score and mmd fields within 1e-6 of max |V| of the brute-force
periodic sum (tests/core/periodic_reference.py, exact to ~1e-8 including the heavy Cauchy
tail) in 1-D and 2-D at h = 0.05, 0.3, 1, 2.5.  Few points (N = 40 or 24), so at h = 0.05 most
points are far from every sample and exercise the streaming fallback for unresolved normalisers.
"""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core import spectral, spectral_plan
from drift_sweeps.spine import theory
from drift_sweeps.core.field import FieldSpec
from drift_sweeps.core.kernels import KERNELS
from drift_sweeps.core.operators import OPERATORS, drift

from .periodic_reference import brute_field

SPECTRAL_KERNELS = [name for name in KERNELS.names() if spectral.supported(name, 1)]
BANDWIDTHS = (0.05, 0.3, 1.0, 2.5)
TOL = 1e-6


def _points(dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = 40 if dim == 1 else 24
    x = torch.rand(n, dim, generator=g, dtype=torch.float64) * 2 * math.pi
    pos = torch.rand(n + 5, dim, generator=g, dtype=torch.float64) * 2 * math.pi
    return x, pos


def test_every_kernel_with_a_transform_and_mass_gets_the_spectral_path() -> None:
    """The contract: a kernel entry with `mass` and a theory.SPECTRA entry is spectral-capable."""
    for name in KERNELS.names():
        has = name in theory.SPECTRA and KERNELS.get(name).mass is not None
        assert spectral.supported(name, 2) == has, name
    assert SPECTRAL_KERNELS, "no kernel has a spectral path"


@pytest.mark.parametrize("name", SPECTRAL_KERNELS)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_kernel_mass_matches_quadrature(name: str, dim: int) -> None:
    """Kernel.mass(dim) = int k over R^dim, checked by radial quadrature of the log-kernel."""
    import numpy as np

    t, w = np.polynomial.legendre.leggauss(400)
    t, w = torch.from_numpy(0.5 * (t + 1)), torch.from_numpy(0.5 * w)
    r = t / (1 - t)  # r in (0, inf), dr = dt / (1 - t)^2
    radial = torch.exp(KERNELS.get(name).log(r, 1.0, dim)) * r ** (dim - 1) / (1 - t) ** 2
    sphere = 2 * math.pi ** (dim / 2) / math.gamma(dim / 2)
    assert float(sphere * (radial * w).sum()) == pytest.approx(KERNELS.get(name).mass(dim), rel=1e-6)


@pytest.mark.parametrize("h", BANDWIDTHS)
@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("kernel", SPECTRAL_KERNELS)
def test_spectral_fields_match_brute_force_image_sum(kernel: str, dim: int, h: float) -> None:
    x, pos = _points(dim)
    shells = 100 if dim == 1 else 12
    field = FieldSpec(kernel, h, periodic=True, neg_is_x=True, backend="spectral")
    for op in spectral.SPECTRAL_IMPLEMENTATIONS:
        ref = brute_field(op, x, pos, kernel, h, shells)
        v = drift(op, x, pos, x, field)
        assert v.dtype == torch.float64 and v.shape == x.shape
        err = float((v - ref).abs().max() / ref.abs().max())
        print(f"{kernel} d={dim} h={h} {op}: {err:.1e} of max|V|")
        assert err < TOL, (op, err)


NEAR_ONLY_CASES = [(k, d, h) for k in SPECTRAL_KERNELS for d in (1, 2) for h in BANDWIDTHS
                   if spectral_plan.near_only_radius(k, h, d) > 0]


@pytest.mark.parametrize("kernel,dim,h", NEAR_ONLY_CASES)
def test_near_only_plan_matches_brute_force_image_sum(kernel: str, dim: int, h: float) -> None:
    """The near-only plan (pairs within the radius where k falls below exp(-36) of k(0), no Fourier
    part) gives the exact periodic field, points far from every sample included (redone by streaming)."""
    x, pos = _points(dim, seed=11)
    r_t = spectral_plan.near_only_radius(kernel, h, dim)
    plan = spectral.Plan("near", cutoff=r_t)
    field = FieldSpec(kernel, h, periodic=True, neg_is_x=True)
    for op, impl in spectral.SPECTRAL_IMPLEMENTATIONS.items():
        ref = brute_field(op, x, pos, kernel, h, 100 if dim == 1 else 12)
        v = impl(x, pos, x, field, plan)
        err = float((v - ref).abs().max() / ref.abs().max())
        assert err < TOL, (op, err)


def test_near_only_plan_is_chosen_for_narrow_light_tailed_kernels() -> None:
    """auto: a narrow Gaussian on the 2-D torus sums its near pairs; the heavy-tailed Cauchy never does."""
    cpu = torch.device("cpu")
    plan = spectral.plan_for(FieldSpec("gaussian", 0.05, True, True), 0.05, 2, 4096, 4096, 4096, cpu)
    assert plan.method == "near" and plan.cutoff == pytest.approx(0.05 * math.sqrt(2 * 36.0))
    assert NEAR_ONLY_CASES and all(k != "cauchy" for k, _, _ in NEAR_ONLY_CASES)
    assert spectral_plan.near_only_radius("gaussian", 2.5, 2) == 0.0  # r_t > pi: images overlap


SCAN_CASES = [(k, h) for k in KERNELS.names() for h in BANDWIDTHS + (0.002,)
              if spectral_plan.scan_degree(k, h, 1) >= 0]


@pytest.mark.parametrize("kernel,h", SCAN_CASES)
def test_scan_plan_matches_brute_force_image_sum(kernel: str, h: float) -> None:
    """The 1-D scan plan (prefix sums over the sorted samples, expscan.py) gives the exact periodic
    field; a sample at a point's own position (a tie) takes the symmetric gradient 0 there."""
    x, pos = _points(1, seed=13)
    pos[3] = x[5]
    field = FieldSpec(kernel, h, periodic=True, neg_is_x=True)
    for op, impl in spectral.SPECTRAL_IMPLEMENTATIONS.items():
        ref = brute_field(op, x, pos, kernel, h, 100)
        v = impl(x, pos, x, field, spectral.Plan("scan"))
        err = float((v - ref).abs().max() / ref.abs().max())
        assert err < TOL, (op, err)


def test_scan_plan_covers_the_exponential_kernels_and_their_precision() -> None:
    """Every kernel whose entry has `exp_poly` gets the scan in 1-D where its expansion is precise
    enough (the Laplacian at every bandwidth here; Matern 5/2 not at h = 0.05); never in 2-D."""
    kernels = {k for k, _ in SCAN_CASES}
    assert kernels == {k for k in KERNELS.names() if KERNELS.get(k).exp_poly is not None} and "laplacian" in kernels
    assert all(("laplacian", h) in SCAN_CASES for h in BANDWIDTHS + (0.002,))
    assert spectral_plan.scan_degree("matern52", 0.05, 1) < 0 and spectral_plan.scan_degree("laplacian", 0.3, 2) < 0


def test_float32_inputs_stay_float32_and_close() -> None:
    x, pos = _points(2, seed=3)
    field = FieldSpec("gaussian", 0.3, True, True, backend="spectral")
    v64 = drift("meanshift", x, pos, x, field)
    v32 = drift("meanshift", x.float(), pos.float(), x.float(), field)
    assert v32.dtype == torch.float32
    assert float((v32.double() - v64).abs().max() / v64.abs().max()) < 1e-5


def test_auto_backend_rule() -> None:
    """auto: spectral for the convolution operators on the torus at trial sizes; stream elsewhere."""
    cpu = torch.device("cpu")
    torus = FieldSpec("gaussian", 0.3, True, True)
    assert torus.backend == "auto"
    assert spectral.plan_for(torus, 0.3, 2, 4096, 4096, 4096, cpu).method in ("direct", "ewald")
    assert spectral.plan_for(FieldSpec("laplacian", 0.3, True), 0.3, 1, 4096, 4096, 4096, cpu).method == "scan"
    assert spectral.plan_for(FieldSpec("laplacian", 0.3, True), 0.3, 2, 4096, 4096, 4096, cpu).method == "ewald"
    assert spectral.plan_for(FieldSpec("gaussian", 0.3, False), 0.3, 2, 4096, 4096, 4096, cpu).method == "stream"
    # a handful of points against a wide Fourier grid: streaming is cheaper
    assert spectral.plan_for(FieldSpec("cauchy", 0.05, True), 0.05, 2, 16, 16, 16, cpu).method == "stream"


def test_cost_model_prices_the_threads_each_part_uses() -> None:
    """FINUFFT and torch use every thread a trial has; the compiled near loop splits its points over them only
    where a call has enough pairs (near.thread_parts).  The prices follow, and the split radius too."""
    from drift_sweeps.core import near, spectral_plan

    if not spectral_plan.near_compiled("laplacian"):
        pytest.skip("numba not installed")
    one = spectral_plan.near_cost("laplacian", 2, 4096, 8192, 0.5)
    parts = near.thread_parts(4096, near.strip_layout(near.CUTOFF * 0.5, 4096, 2).candidates, 8)
    assert 1 < parts <= 8
    call = spectral_plan.COST_NEAR_CALL  # a call's fixed part is not split
    eight = spectral_plan.near_cost("laplacian", 2, 4096, 8192, 0.5, threads=8)
    assert eight == pytest.approx(call + (one - call) / parts)
    small = spectral_plan.near_cost("laplacian", 2, 64, 128, 0.5)  # too few pairs to split
    assert spectral_plan.near_cost("laplacian", 2, 64, 128, 0.5, threads=8) == small
    plan8 = spectral_plan.priced("laplacian", 0.3, 2, 4096, 4096, 4096, 49, 8)
    assert plan8.method == "ewald"
    k_far = int(spectral_plan.EWALD_MODES / plan8.a)
    expected = (spectral_plan.nufft_cost(k_far, 2, 4096, 8192) / 8
                + spectral_plan.near_cost("laplacian", 2, 4096, 8192, plan8.a, threads=8))
    assert plan8.cost_s == pytest.approx(expected)


def test_nufft_upsampling_follows_finufft_widths_and_the_precision() -> None:
    """FINUFFT's spreading width per precision and upsampling (its rule): sigma = 1.25 reaches float32's 1e-8 with a
    14-wide kernel but not float64's 1e-12 (20 > MAX_SPREAD), so float64 always takes sigma = 2.  In float32 the
    cost model takes 1.25 for a large grid against few points (the FFT dominates) and 2 for many points on a
    small grid (the spreading dominates), and a field's transforms run at the sigma it chose."""
    from drift_sweeps.core import spectral_plan as sp

    assert [sp.spread_width(e, s) for e, s in ((1e-12, 2.0), (1e-8, 2.0), (1e-8, 1.25), (1e-12, 1.25))] == [13, 9, 14, 20]
    assert sp._smooth_even(191) == 192 and sp._smooth_even(241) == 250 and sp._smooth_even(7) == 8
    eps32, eps64 = sp.NUFFT_EPS[torch.float32], sp.NUFFT_EPS[torch.float64]
    assert sp.nufft_choice(95, 2, 256, 512, eps32)[1] == 1.25
    assert sp.nufft_choice(8, 2, 16384, 32768, eps32)[1] == 2.0
    assert all(sp.nufft_choice(k, 2, n, 2 * n, eps64)[1] == 2.0 for k in (8, 95, 400) for n in (256, 16384))
    assert sp.nufft_cost(95, 2, 256, 512, eps32) < sp.nufft_cost(95, 2, 256, 512, eps64)
    x, pos = _points(2, seed=7)
    field = FieldSpec("gaussian", 0.3, True, True)
    for dtype, sigma in ((torch.float32, 1.25), (torch.float64, 2.0)):
        spectral._PLANS.clear()
        v = spectral.meanshift(x.to(dtype), pos.to(dtype), x.to(dtype), field, spectral.Plan("direct", 95))
        assert {key[-1] for key in spectral._PLANS} == {sigma}
        ref = brute_field("meanshift", x, pos, "gaussian", 0.3, 12)
        assert float((v.double() - ref).abs().max() / ref.abs().max()) < (1e-5 if dtype == torch.float32 else TOL)


def test_compiled_near_loop_on_several_threads_equals_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The points split into ranges on a thread pool, and visited in the samples' strip order (a large call): the
    same sums, bit for bit, as one range in the caller's order for a set of other samples; for the points' own
    set, read once per pair (the far end's shares added in another order), the same to rounding, and the same
    as that set read from both ends."""
    from drift_sweeps.core import near

    if not near.compiled_available():
        pytest.skip("numba not installed")
    g = torch.Generator().manual_seed(5)
    n = 2 * near.SORT_POINTS
    x = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 * math.pi
    y = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 * math.pi
    before = torch.get_num_threads()
    runs = []
    try:
        for threads, sort_points in ((1, near.SORT_POINTS), (1, n + 1), (3, near.SORT_POINTS)):
            torch.set_num_threads(threads)
            monkeypatch.setattr(near, "SORT_POINTS", sort_points)
            assert near.thread_parts(n, near.strip_layout(near.CUTOFF * 0.3, n, 2).candidates / 2, 3) == 3
            runs.append((near.near_sums(x, y, "laplacian", 0.3, 0.3, True, False),
                         near.near_sums(x, x, "laplacian", 0.3, 0.3, True, True)))
        monkeypatch.setattr(near, "SELF_ONCE", False)
        both_ends = near.near_sums(x, x, "laplacian", 0.3, 0.3, True, True)
    finally:
        torch.set_num_threads(before)
    (data, own), others = runs[1], [runs[0], runs[2]]
    for other_data, other_own in others:
        assert torch.equal(data[0], other_data[0]) and torch.equal(data[1], other_data[1])
        for a, b in zip(own, other_own):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13 * float(a.abs().max()))
    for a, b in zip(own, both_ends):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13 * float(a.abs().max()))


def test_spectral_backend_refuses_what_it_cannot_do() -> None:
    x, pos = _points(1)
    with pytest.raises(ValueError, match="spectral"):
        drift("deng", x, pos, x, FieldSpec("gaussian", 0.3, True, backend="spectral"))
    with pytest.raises(ValueError, match="torus"):
        drift("meanshift", x, pos, x, FieldSpec("gaussian", 0.3, False, backend="spectral"))


@pytest.mark.parametrize("operator", ["deng", "sinkhorn"])
def test_auto_streams_the_other_operators(operator: str) -> None:
    x, pos = _points(1, seed=5)
    auto = drift(operator, x, pos, x, FieldSpec("gaussian", 0.5, True, sinkhorn_iters=3))
    stream = drift(operator, x, pos, x, FieldSpec("gaussian", 0.5, True, sinkhorn_iters=3, backend="stream"))
    torch.testing.assert_close(auto, stream)
    assert set(OPERATORS.names()) >= set(spectral.SPECTRAL_IMPLEMENTATIONS)


@pytest.mark.parametrize("kernel", SPECTRAL_KERNELS)
def test_closed_forms_on_tensors_match_the_scalar_theory(kernel: str) -> None:
    """kappa on a whole grid (the coefficient tables) and kappa' = -decay(s)/s, against theory's
    scalar kappa and a central difference of it."""
    s = torch.tensor([0.0, 1e-3, 0.2, 0.7, 1.5, 4.0, 9.0], dtype=torch.float64)
    kap = theory.SPECTRA[kernel].kappa
    for dim in (1, 2):
        assert torch.allclose(spectral._kappa(kernel, s, dim), torch.tensor([kap(v, dim) for v in s.tolist()],
                                                                           dtype=torch.float64), rtol=1e-14)
        d = 1e-5
        fd = torch.tensor([(kap(v + d, dim) - kap(v - d, dim)) / (2 * d) if v > d else (kap(v + d, dim) - kap(v, dim)) / d
                           for v in s.tolist()], dtype=torch.float64)
        assert torch.allclose(spectral.kappa_prime(kernel, s, dim)[2:], fd[2:], rtol=1e-8, atol=1e-12)
        assert abs(float(spectral.kappa_prime(kernel, s, dim)[0]) - float(fd[0])) < 1e-4


@pytest.mark.parametrize("dim", [1, 2])
def test_tabulated_near_transform_matches_the_quadrature(dim: int) -> None:
    """A 2-D grid's many distinct |k| go through the interpolated table: within 1e-10 of Z of the
    direct quadrature (what the coefficient tables need: TRUNCATION_TOL is 1e-10)."""
    g = torch.Generator().manual_seed(0)
    s = torch.rand(60000, generator=g, dtype=torch.float64) * 400
    for kernel, h, a in (("laplacian", 2.0, 0.11), ("cauchy", 0.3, 0.2)):
        z = spectral.mass(kernel, h, dim)
        val, der = spectral._near_radial(kernel, h, dim, a, s)
        pick = torch.arange(0, s.numel(), 97)
        v0, d0 = spectral._near_radial_direct(kernel, h, dim, a, s[pick])
        assert float((val[pick] - v0).abs().max()) < 1e-10 * z
        assert float((der[pick] - d0).abs().max()) < 1e-10 * z


def _hankel_reference(kernel: str, h: float, a: float, s: torch.Tensor, n_q: int = 2048):
    """The 2-D near-part transform as a Hankel transform, 2 pi int J0(s r) k chi(r) r dr over [0, r_c], and its
    s-derivative (with J1), by Gauss-Legendre quadrature with scipy's Bessel functions."""
    from scipy import special

    from drift_sweeps.core.fourier import _gauss_legendre  # the rule's nodes, computed once (O(n^3))
    from drift_sweeps.core.near import CHI_POWER, CUTOFF

    r_c = CUTOFF * a
    nodes, weights = _gauss_legendre(n_q)
    r = 0.5 * r_c * (nodes + 1.0)
    g = torch.exp(KERNELS.get(kernel).log(r, h, 2) - (r / a) ** CHI_POWER) * (0.5 * r_c * weights) * r
    sr = (s.reshape(-1, 1) * r).numpy()
    j0, j1 = torch.from_numpy(special.j0(sr)), torch.from_numpy(special.j1(sr))
    return 2 * math.pi * (j0 * g).sum(1), -2 * math.pi * (j1 * g * r).sum(1)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "cauchy", "matern32", "matern52"])
def test_near_transform_in_2d_is_the_hankel_transform(kernel: str) -> None:
    """In 2-D the near part's transform is taken as the cosine transform of its projection on a line; it equals
    the Hankel transform of the radial function within 1e-12 of Z (a narrow and a wide kernel, small and large
    split radius, frequencies up to 2000)."""
    s = torch.cat([torch.arange(0.0, 200.0, 0.37, dtype=torch.float64), torch.tensor([500.0, 1000.0, 2000.0])])
    for h, a in ((0.02, 0.98), (0.3, 0.05), (0.3, 0.67), (2.5, 0.3)):
        z = spectral.mass(kernel, h, 2)
        val, der = spectral._near_radial_direct(kernel, h, 2, a, s)
        v0, d0 = _hankel_reference(kernel, h, a, s)
        assert float((val - v0).abs().max()) < 1e-12 * z, (h, a)
        assert float((der - d0).abs().max()) < 1e-12 * z, (h, a)


def test_near_transform_of_a_narrow_gaussian_is_its_closed_form() -> None:
    """h = 0.002 with r_c = 1.6 a = 1.57: chi is 1 to 3e-14 wherever the Gaussian is not negligible, so the near
    part's transform is the whole Gaussian's, Z exp(-s^2 h^2 / 2)."""
    h, a = 0.002, 0.98
    s = torch.arange(0.0, 2000.0, 0.7, dtype=torch.float64)
    z = spectral.mass("gaussian", h, 2)
    exact = z * torch.exp(-(s * h) ** 2 / 2)
    val, der = spectral._near_radial_direct("gaussian", h, 2, a, s)
    assert float((val - exact).abs().max()) < 1e-12 * z
    assert float((der + s * h * h * exact).abs().max()) < 1e-12 * z


@pytest.mark.parametrize("kernel,dim", [("matern52", 1), ("cauchy", 1), ("matern32", 1), ("gaussian", 1),
                                        ("cauchy", 2), ("matern52", 2)])
def test_truncation_started_near_its_answer_is_the_one_searched_from_the_first_shells(kernel, dim, monkeypatch):
    """fourier._first_count starts the doubling search at the estimate's chunk: the K found must be the one the
    search from FIRST_SHELLS finds (off the bin edges, where the start moves), and the start must move somewhere."""
    from drift_sweeps.core import fourier

    hs = [0.05 * 1.13 ** i + 1e-7 for i in range(30)]
    started = [fourier._first_count(kernel, h, dim, 0.0, fourier.MAX_MODES_PER_DIM) for h in hs]
    fast = [fourier.truncation.__wrapped__(kernel, h, dim) for h in hs]
    monkeypatch.setattr(fourier, "_first_count", lambda *args: fourier.FIRST_SHELLS)
    assert fast == [fourier.truncation.__wrapped__(kernel, h, dim) for h in hs]
    assert max(started) > fourier.FIRST_SHELLS
    assert all(c <= max(k, fourier.FIRST_SHELLS) for c, k in zip(started, fast))


def test_pricing_new_bandwidths_counts_the_images_once_per_bin_and_silently(caplog):
    """An annealed schedule prices a new h at every step: streaming's image count is taken at the bin edge above h
    (a heavy tail's count sums 10^5 shells), once for the bin, without the tail warning meant for the h in use."""
    from drift_sweeps.core import field as field_mod

    field = FieldSpec("cauchy", 0.3, True)
    field_mod._WARNED.clear()
    field_mod._shells_and_tail.cache_clear()
    spectral_plan.forget()
    with caplog.at_level("WARNING"):
        plans = [spectral_plan.plan_for(field, 0.3 * (1 - 1e-5 * i), 1, 512, 512, 512, torch.device("cpu"),
                                        torch.float32) for i in range(6)]
    assert field_mod._shells_and_tail.cache_info().misses == 1
    assert not [r for r in caplog.records if "image shells leave a tail" in r.getMessage()]
    assert {p.method for p in plans} == {"direct"}
    spectral_plan.forget()


@pytest.mark.parametrize("dim,modes", [(1, 0), (1, 745), (2, 1), (2, 25), (2, 140), (3, 4), (3, 30)])
def test_distinct_lattice_norms_are_torch_unique(dim, modes):
    """fourier._distinct marks the squared norms present instead of sorting them: the same distinct values, dtype
    and inverse as torch.unique (1-D takes the sort: its K^2 values outnumber its 2 K + 1 entries)."""
    from drift_sweeps.core import fourier

    k1 = torch.arange(-modes, modes + 1, dtype=torch.float64)
    norm2 = sum(g * g for g in torch.meshgrid(*([k1] * dim), indexing="ij"))
    want, want_inv = torch.unique(norm2, return_inverse=True)
    got, got_inv = fourier._distinct(norm2)
    assert got.dtype == want.dtype and got_inv.dtype == want_inv.dtype
    assert torch.equal(got, want) and torch.equal(got_inv, want_inv)
