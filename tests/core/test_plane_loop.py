"""The compiled plane pass against the float64 closed forms of its sums, and where run_pass takes it."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core import kept_loops, plane_loop
from drift_sweeps.core.blocks import Geometry
from drift_sweeps.core.field import FieldSpec
from drift_sweeps.core.kernels import KERNELS
from drift_sweeps.core.passes import normalised_pass, run_pass
from drift_sweeps.core import dense, streaming

pytestmark = pytest.mark.skipif(plane_loop._loop() is None, reason="numba is not installed")


@pytest.fixture(autouse=True)
def one_thread():
    """The loops run where a trial runs: on one torch thread (`plane_loop.usable`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(a, b, kernel, h, mask, a_ids=None):
    """(s, disp, shift) in float64 from the registered log-kernel, max-shifted per point."""
    a64, b64 = a.double(), b.double()
    diff = b64.unsqueeze(0) - a64.unsqueeze(1)  # (Na, Nb, D)
    logk = KERNELS.get(kernel)(diff.norm(dim=2), h, a.shape[1])
    if mask:
        ids = torch.arange(a.shape[0]) if a_ids is None else a_ids
        logk[torch.arange(a.shape[0]), ids] = -math.inf
    shift = logk.max(1).values
    e = torch.exp(logk - shift.unsqueeze(1))
    return e.sum(1), (e.unsqueeze(2) * diff).sum(1), shift


@pytest.mark.parametrize("kernel", sorted(plane_loop.CODES))
@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("mask", [False, True])
def test_sums_match_the_float64_closed_form(kernel, dim, mask):
    g = torch.Generator().manual_seed(dim)
    a = torch.randn(700, dim, generator=g)  # more points than one block of the loop
    b = a.clone() if mask else torch.randn(600, dim, generator=g) * 1.5 + 0.3
    h = 0.4 * math.sqrt(dim)
    s, disp, shift = plane_loop.plane_sums(a, b, KERNELS.get(kernel), h, mask=mask)
    s_ref, d_ref, sh_ref = _reference(a, b, kernel, h, mask)
    assert torch.allclose(shift, sh_ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(s, s_ref, rtol=2e-5)
    v, v_ref = disp / s.unsqueeze(1), d_ref / s_ref.unsqueeze(1)
    assert (v - v_ref).abs().max() <= 2e-5 * v_ref.abs().max()


def test_a_subset_leaves_out_its_own_pairs_and_a_fully_masked_point_sums_to_zero():
    g = torch.Generator().manual_seed(0)
    b = torch.randn(300, 2, generator=g)
    ids = torch.tensor([5, 17, 299])
    s, disp, shift = plane_loop.plane_sums(b[ids], b, KERNELS.get("laplacian"), 0.5, mask=True, a_ids=ids)
    s_ref, d_ref, _ = _reference(b[ids], b, "laplacian", 0.5, True, ids)
    assert torch.allclose(s, s_ref, rtol=2e-5) and torch.allclose(disp, d_ref, rtol=1e-4, atol=1e-6)
    one = b[:1]
    s1, d1, sh1 = plane_loop.plane_sums(one, one, KERNELS.get("gaussian"), 0.5, mask=True)
    assert s1.item() == 0.0 and d1.abs().max().item() == 0.0 and sh1.item() == 0.0


def test_far_points_do_not_underflow_and_a_mean_shift_matches_the_dense_reference():
    """A point 40 bandwidths from every sample: every term underflows without the exact shift."""
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(200, 2, generator=g), torch.tensor([[20.0, -20.0]])])
    pos, h = torch.randn(300, 2, generator=g), 0.5
    geo = Geometry(KERNELS.get("gaussian"), h, 2, False, ((0.0, 0.0),), 0, 0)
    res, used = normalised_pass(x, pos, geo, disp=True)
    assert torch.isfinite(res.s).all() and (res.s >= 1.0).all()
    s_ref, d_ref, sh_ref = _reference(x, pos, "gaussian", h, False)
    assert torch.allclose(used, sh_ref, rtol=1e-5) and torch.allclose(res.s, s_ref, rtol=2e-5)
    for kernel in plane_loop.CODES:
        stream = FieldSpec(kernel, h, False, backend="stream")
        reference = FieldSpec(kernel, h, False, backend="dense")
        v = streaming.meanshift(x, pos, x, stream)
        v_ref = dense.meanshift(x.double(), pos.double(), x.double(), reference)
        assert (v.double() - v_ref).abs().max() <= 1e-5 * v_ref.abs().max(), kernel


def test_run_pass_takes_the_loop_only_where_it_applies():
    import dataclasses

    a = torch.randn(50, 2)
    geo = Geometry(KERNELS.get("cauchy"), 0.7, 2, False, ((0.0, 0.0),), 0, 0)
    assert plane_loop.usable(a, a, geo)
    assert not plane_loop.usable(a.double(), a.double(), geo)  # float64: the torch path
    assert not plane_loop.usable(a, a, dataclasses.replace(geo, periodic=True))  # the torus
    assert not plane_loop.usable(a, a, dataclasses.replace(geo, block_x=7, block_y=9))  # blocks asked for
    assert not plane_loop.usable(a, a, dataclasses.replace(geo, kernel=KERNELS.get("laplacian").sharp_kernel()))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert not plane_loop.usable(a, a, geo)
    finally:
        torch.set_num_threads(threads)
    # same sums either way: the loop against the torch blocks, with and without a bias and a given shift
    bias = torch.randn(50, dtype=torch.float64)
    for kw in ({}, {"bias": bias, "shift": torch.randn(50, dtype=torch.float64) + 2.0}):
        fast = run_pass(a, a, geo, mask=True, disp=True, auto_shift="point", **kw)
        slow = run_pass(a, a, dataclasses.replace(geo, block_x=7, block_y=9), mask=True, disp=True,
                        auto_shift="point", **kw)
        assert torch.allclose(fast.s * torch.exp(fast.shift), slow.s * torch.exp(slow.shift), rtol=2e-5)
        assert torch.allclose(fast.disp * torch.exp(fast.shift).unsqueeze(1),
                              slow.disp * torch.exp(slow.shift).unsqueeze(1), rtol=1e-4, atol=1e-6)


def test_a_given_shift_far_below_the_max_marks_the_sum_for_the_exact_redo():
    a = torch.zeros(3, 2)
    b = torch.zeros(4, 2)
    s, _, _ = plane_loop.plane_sums(a, b, KERNELS.get("gaussian"), 1.0, shift=torch.full((3,), -200.0,
                                                                                      dtype=torch.float64))
    assert torch.isinf(s).all()  # exp(0 + 200) per pair: past 2^119, so passes.unresolved redoes them


def test_kept_lse_sums_match_logsumexp():
    g = torch.Generator().manual_seed(4)
    logits2 = -torch.rand(300, 500, generator=g) * 20
    bias2, shift_rows, shift_cols = torch.randn(300, generator=g), torch.randn(500, generator=g), torch.randn(300, generator=g)
    ln2 = math.log(2.0)
    rows = kept_loops.kept_lse_sums(logits2, bias2, shift_rows, True)
    ref = torch.exp(((logits2.double() + bias2.double().unsqueeze(1) - shift_rows.double()) * ln2)).sum(0)
    assert torch.allclose(rows, ref, rtol=1e-5)
    bias_cols = torch.randn(500, generator=g)
    cols = kept_loops.kept_lse_sums(logits2, bias_cols, shift_cols, False)
    ref = torch.exp(((logits2.double() + bias_cols.double() - shift_cols.double().unsqueeze(1)) * ln2)).sum(1)
    assert torch.allclose(cols, ref, rtol=1e-5)
    huge = kept_loops.kept_lse_sums(logits2 + 150.0, bias2, shift_rows, True)
    assert torch.isinf(huge).all()
    with pytest.raises(ValueError, match="do not fit"):  # the compiled loop would read past the vectors
        kept_loops.kept_lse_sums(logits2, bias2, shift_cols, False)


def test_kept_sweep_is_a_column_pass_then_the_next_row_pass():
    """Sinkhorn's fused read: the column log-sum-exps (exact where the shifted sum under- or overflows) and the
    next row pass's sums with the bias they give, as the two passes make them apart."""
    g = torch.Generator().manual_seed(6)
    logits2 = -torch.rand(300, 500, generator=g) * 20
    logits2[:3] -= 400.0  # shifted sums that underflow ...
    logits2[3] += 150.0  # ... and one that overflows: these rows are summed exactly
    bias2, shift_rows2 = torch.randn(500, generator=g), torch.randn(500, generator=g)
    shift = torch.randn(300, generator=g, dtype=torch.float64)
    log_a, ln2 = -math.log(500.0), math.log(2.0)
    col, rows = kept_loops.kept_sweep(logits2, bias2, shift, log_a, shift_rows2)
    exact = torch.logsumexp((logits2.double() + bias2.double()) * ln2, dim=1)
    assert torch.allclose(col, exact, rtol=1e-6, atol=0), (col - exact).abs().max()
    bias_rows = ((-col - log_a) / ln2).float()
    assert torch.equal(rows, kept_loops.kept_lse_sums(logits2, bias_rows, shift_rows2, True))
    ref = torch.exp2(logits2.double() + bias_rows.double().unsqueeze(1) - shift_rows2.double()).sum(0)
    assert torch.allclose(rows, ref, rtol=1e-5)
    unshifted, _ = kept_loops.kept_sweep(logits2, bias2, None, log_a, shift_rows2)
    assert torch.allclose(unshifted, exact, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="do not fit"):
        kept_loops.kept_sweep(logits2, bias2, shift[:10], log_a, shift_rows2)


def test_the_kept_loops_compile_first_in_a_fresh_process(tmp_path):
    """kept_loops inlines plane_loop's exp2, which looks np up in plane_loop's globals: compiled first in a process
    with a cold cache (before any plane pass), it must find it there."""
    import os
    import subprocess
    import sys

    code = ("import torch; from drift_sweeps.core import kept_loops; torch.set_num_threads(1); "
            "L = -torch.rand(8, 16); s = kept_loops.kept_lse_sums(L, torch.zeros(16), torch.zeros(8), False); "
            "assert s is not None and torch.allclose(s, torch.exp2(L.double()).sum(1), rtol=1e-6), s")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("kernel", sorted(plane_loop.CODES))
def test_the_kept_log_kernel_matrix_matches_the_registered_kernel(kernel):
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(70, 3, generator=g), torch.randn(90, 3, generator=g)
    geo = Geometry(KERNELS.get(kernel), 0.6, 3, False, ((0.0, 0.0, 0.0),), 0, 0)
    m = kept_loops.log2_kernel_matrix(a, b, geo)
    ref = KERNELS.get(kernel)((b.double().unsqueeze(1) - a.double().unsqueeze(0)).norm(dim=2), 0.6, 3) / math.log(2.0)
    assert m.shape == (90, 70) and torch.allclose(m.double(), ref, rtol=1e-5, atol=1e-5)
    assert kept_loops.log2_kernel_matrix(a, b, Geometry(KERNELS.get("laplacian").sharp_kernel(), 0.6, 3, False,
                                                        ((0.0, 0.0, 0.0),), 0, 0)) is None


@pytest.mark.parametrize("kernel", sorted(plane_loop.CODES))
@pytest.mark.parametrize("auto_shift", ["point", "none"])
def test_weighted_and_unshifted_passes_equal_the_torch_blocks(kernel, auto_shift):
    """score and mmd's passes (the gradient weight -dlog k(r)/r on the displacements; mmd's absolute sums)."""
    import dataclasses

    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(260, 2, generator=g), torch.randn(300, 2, generator=g) * 1.3
    geo = Geometry(KERNELS.get(kernel), 0.5, 2, False, ((0.0, 0.0),), 0, 0)
    blocks = dataclasses.replace(geo, block_x=7, block_y=9)
    for mask, y in ((False, b), (True, a)):
        fast = run_pass(a, y, geo, mask=mask, disp=True, grad_weight=True, auto_shift=auto_shift)
        slow = run_pass(a, y, blocks, mask=mask, disp=True, grad_weight=True, auto_shift=auto_shift)
        scale_f, scale_s = torch.exp(fast.shift), torch.exp(slow.shift)
        assert torch.allclose(fast.s * scale_f, slow.s * scale_s, rtol=3e-5), (kernel, mask)
        d_f, d_s = fast.disp * scale_f.unsqueeze(1), slow.disp * scale_s.unsqueeze(1)
        assert (d_f - d_s).abs().max() <= 3e-5 * d_s.abs().max(), (kernel, mask)
