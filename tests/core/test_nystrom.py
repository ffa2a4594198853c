"""The Nystrom (landmark) drift: exact where it should be, converging in m, and its error and speed at N = M = 4096."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch

from drift_sweeps.core import nystrom
from drift_sweeps.core.field import FieldSpec
from drift_sweeps.core.operators import drift
from drift_sweeps.spine.config import TrialConfig


def _ring(n: int, m: int, seed: int = 0, dtype=torch.float64):
    """Points from N(0, I) and data from eight Gaussians on a ring of radius 2 (2-D)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    angles = torch.arange(8, dtype=dtype) * 2 * math.pi / 8
    centers = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
    pos = centers[torch.randint(0, 8, (m,), generator=g)] + 0.3 * torch.randn(m, 2, generator=g, dtype=dtype)
    return x, pos


def _rel_rms(v: torch.Tensor, ref: torch.Tensor) -> float:
    return float((v - ref).square().sum(1).mean().sqrt() / ref.square().sum(1).mean().sqrt())


@pytest.mark.parametrize("backend", ["dense", "stream"])
@pytest.mark.parametrize("periodic", [False, True])
def test_exact_at_zero_landmarks_and_at_the_batch(backend: str, periodic: bool) -> None:
    x, pos = _ring(30, 40)
    if periodic:
        x, pos = x % (2 * math.pi), pos % (2 * math.pi)
    for m in (0, 40, 100):
        for repulsion in (False, True):
            field = FieldSpec("laplacian", 0.6, periodic, landmarks=m, nystrom_repulsion=repulsion, backend=backend)
            assert torch.equal(drift("nystrom", x, pos, x, field), drift("meanshift", x, pos, x, field))
    with pytest.raises(ValueError, match="plane"):
        drift("nystrom", x, pos, x, FieldSpec("laplacian", 0.6, True, landmarks=8, backend=backend))


def test_the_factorisation_is_exact_with_every_sample_a_landmark() -> None:
    """attraction() with m = M (what drift() skips as exact) reproduces the exact attraction: K(x,Y) K(Y,Y)^-1 K(Y,Y)."""
    x, pos = _ring(50, 60, seed=1)
    field = FieldSpec("laplacian", 0.3)  # K(Y, Y) well conditioned: float64 keeps ~1e-10
    exact = nystrom.exact_side(x, pos, field)
    assert _rel_rms(nystrom.attraction(x, pos, field, pos.shape[0]), exact) < 1e-7


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "matern52", "rational_quadratic"])
def test_error_shrinks_with_the_landmarks(kernel: str) -> None:
    x, pos = _ring(300, 400, seed=2)
    exact = drift("meanshift", x, pos, x, FieldSpec(kernel, 0.5))
    errors = [_rel_rms(drift("nystrom", x, pos, x, FieldSpec(kernel, 0.5, landmarks=m)), exact) for m in (16, 64, 256)]
    print(f"{kernel}: relative RMS error at m = 16, 64, 256 of M = 400: " + ", ".join(f"{e:.1e}" for e in errors))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05


def test_both_sides_far_points_dtype_and_gradients() -> None:
    x, pos = _ring(200, 300, seed=3)
    x[0] = torch.tensor([60.0, -40.0], dtype=x.dtype)  # far from every landmark: its kernel row underflows
    field = FieldSpec("gaussian", 0.5, landmarks=64, nystrom_repulsion=True)
    v = drift("nystrom", x, pos, x, field)
    assert torch.isfinite(v).all()
    exact = drift("meanshift", x, pos, x, field)
    assert _rel_rms(v[1:], exact[1:]) < 0.3
    v32 = drift("nystrom", x.float(), pos.float(), x.float(), field)
    assert v32.dtype == torch.float32 and torch.isfinite(v32).all()
    xg = x[1:].clone().requires_grad_(True)  # the no-stop-gradient ablation: dense, differentiable
    drift("nystrom", xg, pos, xg, dataclasses.replace(field, nystrom_repulsion=False)).square().sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
    assert TrialConfig.from_dict({"operator": "nystrom", "landmarks": 256, "target": "moons"}).landmarks == 256


def test_error_and_speed_up_at_4096() -> None:
    """The DriftXpress figures for this implementation: relative RMS error against the exact field and speed-up
    over the exact streaming mean-shift, float32, one thread (the least noisy timing on a shared machine), best
    of 3 interleaved runs.  Attraction only (the default): the exact repulsion keeps half the exact cost, so the
    speed-up is at most ~2x at N = M; both sides approximated: more, at a larger error."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, pos = _ring(4096, 4096, seed=4, dtype=torch.float32)
        for kernel in ("gaussian", "laplacian"):
            cases = {"exact": FieldSpec(kernel, 0.5)}
            cases.update({(m, rep): FieldSpec(kernel, 0.5, landmarks=m, nystrom_repulsion=rep)
                          for rep in (False, True) for m in (64, 256, 1024)})
            best = {k: math.inf for k in cases}
            out = {}
            for _ in range(3):
                for key, field in cases.items():
                    t0 = time.perf_counter()
                    out[key] = drift("meanshift" if key == "exact" else "nystrom", x, pos, x, field)
                    best[key] = min(best[key], time.perf_counter() - t0)
            print(f"\n{kernel}, h = 0.5, N = M = 4096: exact {best['exact'] * 1e3:.0f} ms")
            errors = {}
            for key in cases:
                if key == "exact":
                    continue
                errors[key] = _rel_rms(out[key].double(), out["exact"].double())
                print(f"  m = {key[0]:4d} {'both sides' if key[1] else 'attraction'}: error {errors[key]:.2e}, "
                      f"{best[key] * 1e3:.0f} ms, speed-up {best['exact'] / best[key]:.2f}x")
            for rep in (False, True):
                assert errors[(64, rep)] > errors[(256, rep)] > errors[(1024, rep)]
            assert errors[(1024, False)] < 1e-2
    finally:
        torch.set_num_threads(threads)
