"""The streaming operators against the dense reference, over every registered operator x kernel.

Two implementations of the same thing (streaming.py vs dense.py) must agree to float32 round-off
on the plane and the torus, with and without the self-pair mask, for block sizes that divide
neither N nor M; the fallbacks (underflow, every pair masked, near-coincident points at large
dim) and the differentiable path are exercised separately.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch

from drift_sweeps.core import passes, stream_sinkhorn, streaming
from drift_sweeps.core.field import FieldSpec
from drift_sweeps.core.kernels import KERNELS
from drift_sweeps.core.loss import drift_loss
from drift_sweeps.core.operators import DENSE_OPERATORS, OPERATORS, drift

TOL = 3e-5  # max |stream - dense| / max |dense|: float32 round-off of both, with margin


def _field(kernel: str, operator: str, periodic: bool, neg_is_x: bool, bandwidth: float, **kw) -> FieldSpec:
    extra = {"bandwidth_scales": (0.5, 1.0), "drift_norm": True} if operator == "deng" else {}
    kw.setdefault("backend", "stream")
    return FieldSpec(kernel, bandwidth, periodic, neg_is_x, sinkhorn_iters=4, **extra, **kw)


def _both(op: str, x, pos, neg, field: FieldSpec) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        v_stream = drift(op, x, pos, neg, field)
        v_dense = drift(op, x, pos, neg, dataclasses.replace(field, backend="dense"))
    return v_stream, v_dense


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _data(periodic: bool, dim: int, neg_is_x: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n, m, k = 37, 29, 23
    if periodic:
        x = torch.rand(n, dim, generator=g) * 2 * math.pi
        pos = torch.rand(m, dim, generator=g) * 2 * math.pi
        neg = x if neg_is_x else torch.rand(k, dim, generator=g) * 2 * math.pi
    else:
        x = torch.randn(n, dim, generator=g)
        pos = torch.randn(m, dim, generator=g) + 0.5
        neg = x if neg_is_x else torch.randn(k, dim, generator=g) - 0.3
    return x, pos, neg


def test_every_operator_has_both_implementations() -> None:
    assert OPERATORS.names() == DENSE_OPERATORS.names()
    assert set(streaming.STREAM_IMPLEMENTATIONS) == set(OPERATORS.names())


@pytest.mark.parametrize("neg_is_x", [True, False], ids=["neg=x", "neg=other"])
@pytest.mark.parametrize("geometry", ["plane1", "plane2", "torus1", "torus2"])
@pytest.mark.parametrize("kernel", KERNELS.names())
@pytest.mark.parametrize("operator", OPERATORS.names())
def test_stream_equals_dense(operator: str, kernel: str, geometry: str, neg_is_x: bool) -> None:
    periodic, dim = geometry.startswith("torus"), int(geometry[-1])
    x, pos, neg = _data(periodic, dim, neg_is_x)
    # blocks of 5 points x 7 samples divide none of N = 37, M = 29, K = 23; on the torus two image shells
    # (fixed: a heavy tail's automatic count runs to dozens, the same loop many more times) cover the image loop
    field = _field(kernel, operator, periodic, neg_is_x, 1.3 if periodic else 0.8, block_x=5, block_y=7,
                   **({"images": 2} if periodic else {}))
    v_stream, v_dense = _both(operator, x, pos, neg, field)
    assert v_stream.shape == v_dense.shape == x.shape and v_stream.dtype == x.dtype
    assert _rel_err(v_stream, v_dense) < TOL


@pytest.mark.parametrize("kernel", KERNELS.names())
@pytest.mark.parametrize("operator", OPERATORS.names())
def test_stream_equals_dense_default_blocks_float64(operator: str, kernel: str) -> None:
    """Automatic block sizes, and float64 inputs stay float64 (agreement then to ~1e-12)."""
    x, pos, neg = _data(True, 1, True, seed=1)
    field = _field(kernel, operator, True, True, 0.7)
    v_stream, v_dense = _both(operator, x.double(), pos.double(), neg.double(), field)
    assert v_stream.dtype == torch.float64
    assert _rel_err(v_stream, v_dense) < 1e-9


@pytest.mark.parametrize("operator", OPERATORS.names())
def test_out_of_range_sums_are_redone_exactly(operator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first block of samples is far from every point, later blocks are close: the shift
    taken from the first block overflows exp() later, and those points need the exact pass."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 2, generator=g)
    x[:5] += 40.0  # and a few points far from everything
    pos = torch.randn(30, 2, generator=g) * 0.3 + torch.tensor([1.0, 0.0])
    pos[:9] += torch.tensor([0.0, 25.0])  # exactly the first block (block_y = 9)
    exact_calls = []
    real = passes.exact_shift
    monkeypatch.setattr(passes, "exact_shift", lambda *a, **k: exact_calls.append(1) or real(*a, **k))
    monkeypatch.setattr(stream_sinkhorn, "SINKHORN_CACHE_BYTES", 0)  # sinkhorn: the streamed iterations
    for kernel in KERNELS.names():
        field = FieldSpec(kernel, 0.1, sinkhorn_iters=3, backend="stream", block_x=7, block_y=9)
        v_stream, v_dense = _both(operator, x, pos, x, field)
        assert torch.isfinite(v_stream).all()
        assert _rel_err(v_stream, v_dense) < 1e-4, kernel
    if operator != "mmd":  # mmd sums k itself: no normalisation, no shift
        assert exact_calls


@pytest.mark.parametrize("operator", OPERATORS.names())
def test_single_point_every_negative_masked(operator: str) -> None:
    x = torch.tensor([[0.3, -0.2]])
    pos = torch.randn(9, 2, generator=torch.Generator().manual_seed(3))
    v_stream, v_dense = _both(operator, x, pos, x, FieldSpec("gaussian", 0.5, sinkhorn_iters=3))
    assert torch.isfinite(v_stream).all()
    assert _rel_err(v_stream, v_dense) < TOL


@pytest.mark.parametrize("kernel", KERNELS.names())
@pytest.mark.parametrize("operator", ["meanshift", "sinkhorn", "score"])
def test_large_dim_matmul_distances(operator: str, kernel: str) -> None:
    """dim > 8 takes |a|^2 + |b|^2 - 2 a.b; coincident pairs (sinkhorn's unmasked self-pairs)
    must still come out exact, or the Laplacian's sqrt amplifies the cancellation."""
    g = torch.Generator().manual_seed(4)
    x, pos = torch.randn(50, 16, generator=g), torch.randn(40, 16, generator=g)
    field = FieldSpec(kernel, 3.0, sinkhorn_iters=3, block_x=7, block_y=9)
    with torch.no_grad():
        truth = drift(operator, x.double(), pos.double(), x.double(), dataclasses.replace(field, backend="dense"))
    v_stream, v_dense = _both(operator, x, pos, x, field)
    assert _rel_err(v_stream, truth) < 2e-6
    assert _rel_err(v_stream, v_dense) < TOL


@pytest.mark.parametrize("far", [False, True], ids=["near", "far-points"])
def test_sinkhorn_cached_and_streamed_iterations_agree(far: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sinkhorn keeps its log-kernel matrix when small; both paths equal dense (also when
    unshifted sums underflow: points 40 bandwidths away)."""
    x, pos, _ = _data(False, 2, True, seed=5) if far else _data(True, 1, True, seed=5)
    if far:
        x[:4] += 4.0
    field = FieldSpec("laplacian", 0.1 if far else 1.0, not far, sinkhorn_iters=6, block_x=5, block_y=7)
    with torch.no_grad():
        dense = drift("sinkhorn", x, pos, x, dataclasses.replace(field, backend="dense"))
        cached = drift("sinkhorn", x, pos, x, field)
        monkeypatch.setattr(stream_sinkhorn, "SINKHORN_CACHE_BYTES", 0)
        streamed = drift("sinkhorn", x, pos, x, field)
    assert _rel_err(cached, dense) < TOL
    assert _rel_err(streamed, dense) < TOL


def test_sinkhorn_stops_once_converged_and_equals_the_full_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """sinkhorn_tol: at a large bandwidth the potentials settle in a few iterations; the early stop gives the
    field of all `sinkhorn_iters` to round-off, dense and streamed alike (kept and streamed log-kernel)."""
    from drift_sweeps.core import dense

    g = torch.Generator().manual_seed(8)
    x, pos = torch.randn(300, 2, generator=g), torch.randn(250, 2, generator=g) + 0.3
    calls: list[int] = []
    real = dense.sinkhorn_converged

    def counted(moved, it, tol):
        calls.append(it)
        return real(moved, it, tol)

    monkeypatch.setattr(dense, "sinkhorn_converged", counted)
    monkeypatch.setattr(stream_sinkhorn, "sinkhorn_converged", counted)
    full = FieldSpec("gaussian", 1.5, False, sinkhorn_iters=60, sinkhorn_tol=0.0)
    early = dataclasses.replace(full, sinkhorn_tol=1e-6)
    for backend in ("dense", "stream"):
        with torch.no_grad():
            calls.clear()
            v_full = drift("sinkhorn", x, pos, x, dataclasses.replace(full, backend=backend))
            assert len(calls) == 2 * 60  # both sides, every iteration
            calls.clear()
            v_early = drift("sinkhorn", x, pos, x, dataclasses.replace(early, backend=backend))
            assert 2 * 2 <= len(calls) <= 2 * 15, (backend, len(calls))
        assert _rel_err(v_early, v_full) < 1e-5, backend
    monkeypatch.setattr(stream_sinkhorn, "SINKHORN_CACHE_BYTES", 0)  # the streamed iterations stop alike
    with torch.no_grad():
        calls.clear()
        v_streamed = drift("sinkhorn", x, pos, x, dataclasses.replace(early, backend="stream"))
    assert len(calls) <= 2 * 15 and _rel_err(v_streamed, v_full) < TOL


@pytest.mark.parametrize("operator", OPERATORS.names())
def test_differentiable_path_matches_dense_autograd(operator: str) -> None:
    """stop_gradient=False differentiates through V: the stream backend must give dense's gradients."""
    g = torch.Generator().manual_seed(6)
    x0 = torch.rand(24, 1, generator=g) * 2 * math.pi
    pos = torch.rand(20, 1, generator=g) * 2 * math.pi
    grads = []
    for backend in ("stream", "dense"):
        field = _field("laplacian", operator, True, True, 0.9, backend=backend)
        x = x0.clone().requires_grad_(True)
        loss, v = drift_loss(x, pos, operator, field, stop_gradient=False)
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1])
    # and the value under autograd equals the streamed value without it
    field = _field("laplacian", operator, True, True, 0.9)
    with torch.no_grad():
        v_stream = drift(operator, x0, pos, x0, field)
    x = x0.clone().requires_grad_(True)
    _, v = drift_loss(x, pos, operator, field, stop_gradient=False)
    assert _rel_err(v_stream, v) < TOL


def test_stop_gradient_loss_gradient_is_minus_two_v_over_n() -> None:
    x0 = torch.randn(30, 2, generator=torch.Generator().manual_seed(7))
    pos = torch.randn(25, 2, generator=torch.Generator().manual_seed(8))
    x = x0.clone().requires_grad_(True)
    loss, v = drift_loss(x, pos, "meanshift", FieldSpec("gaussian", 0.7), stop_gradient=True)
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(grad, -2.0 * v / x.shape[0])


@pytest.mark.parametrize("name", KERNELS.names())
def test_kernel_entry_forms_agree(name: str) -> None:
    """dlog is the derivative of log; the in-place squared-distance forms equal the reference."""
    kern = KERNELS.get(name)
    r = torch.linspace(0.05, 6.0, 200, dtype=torch.float64, requires_grad=True)
    for dim in (1, 2, 5):
        lk = kern.log(r, 0.8, dim)
        (auto,) = torch.autograd.grad(lk.sum(), r)
        with torch.no_grad():
            torch.testing.assert_close(kern.dlog(r, 0.8, dim), auto)
            torch.testing.assert_close(kern.log_from_sq_(r.square(), 0.8, dim), lk)
            w = kern.weight_from_sq_(r.square(), 0.8, dim)
            want = -auto / r
            if isinstance(w, float):
                torch.testing.assert_close(torch.full_like(r, w), want)
            else:
                torch.testing.assert_close(w, want)


def test_fieldspec_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        FieldSpec(backend="gpu")
    with pytest.raises(ValueError, match="block"):
        FieldSpec(block_x=-1)


def test_blocks_are_bounded() -> None:
    by, bx = streaming.block_shape(65536, 65536, 4, torch.device("cpu"), torch.float32)
    assert by * bx <= streaming.CPU_BLOCK_ELEMS
    assert streaming.block_shape(10, 7, 4, torch.device("cpu"), torch.float32, 3, 4) == (4, 3)


_MEMORY_PROBE = """
import json, resource, torch
from drift_sweeps.core.operators import FieldSpec, drift
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
n = {n}
x = torch.rand(n, 1, generator=g) * 6.283; pos = torch.rand(n, 1, generator=g) * 6.283
drift("meanshift", x[:64], pos[:64], x[:64], FieldSpec("gaussian", 0.3, True))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.no_grad():
    v = drift("meanshift", x, pos, x, FieldSpec("gaussian", 0.3, True))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grew_kib": after - before, "finite": bool(torch.isfinite(v).all())}}))
"""


def test_streaming_memory_does_not_grow_with_n_times_m() -> None:
    """N = M = 16384: one (N, M) float32 matrix alone would be 1 GiB; the stream stays near 0."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE.format(n=16384)], capture_output=True, text=True,
                         timeout=300, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["finite"]
    assert res["grew_kib"] < 64 * 1024, res
