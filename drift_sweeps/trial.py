"""The one trial loop: `run_trial(config, report)`.  Ray-free; every entry point calls it."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Callable, Optional

import torch

from . import record
from .config import TrialConfig
from .core.geometry import wrap
from .core.loss import drift_loss
from .core.metrics import energy_distance, frequencies, spectrum_error
from .core.operators import FieldSpec
from .core.schedules import bandwidth_at
from .core.targets import Target, TargetSpec, make_target

log = logging.getLogger(__name__)

Report = Callable[[dict[str, Any]], None]

# Failure injection for the test suite only (never set in normal use): JSON like
# {"step": 12, "seed": 1}: a trial whose config matches every other key raises at that step.
# An environment variable, so it reaches Ray workers without being a config key or a Parquet column.
FAULT_ENV = "DRIFT_SWEEPS_TEST_FAULT"


class InjectedFailure(RuntimeError):
    """Raised by the test-only failure injection (FAULT_ENV) to exercise failure handling."""


def _fault_step(cfg: TrialConfig) -> int:
    """The step at which FAULT_ENV asks this trial to fail (-1: never)."""
    spec = json.loads(os.environ.get(FAULT_ENV) or "{}")
    match = all(getattr(cfg, k, None) == v for k, v in spec.items() if k != "step")
    return int(spec["step"]) if spec and match else -1


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but CUDA is not available")
    return torch.device(name)


def build_target(cfg: TrialConfig) -> Target:
    """The trial's target distribution."""
    spec = TargetSpec(cfg.k_max, cfg.k_min, cfg.amplitude, cfg.phase, cfg.target_seed, cfg.target_path,
                      cfg.target_modes)
    return make_target(cfg.target, spec)


class _Generator(torch.nn.Module):
    """One-step generator f(noise): an MLP with SiLU activations."""

    def __init__(self, noise_dim: int, dim: int, hidden: int, layers: int, gen: torch.Generator) -> None:
        super().__init__()
        mods: list[torch.nn.Module] = []
        width = noise_dim
        for _ in range(layers):
            mods += [torch.nn.Linear(width, hidden), torch.nn.SiLU()]
            width = hidden
        mods.append(torch.nn.Linear(width, dim))
        self.net = torch.nn.Sequential(*mods)
        for m in self.net:
            if isinstance(m, torch.nn.Linear):  # PyTorch's default init, drawn from the trial's generator
                torch.nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
                bound = 1.0 / math.sqrt(m.in_features)
                torch.nn.init.uniform_(m.bias, -bound, bound, generator=gen)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def run_trial(cfg: TrialConfig, report: Optional[Report] = None) -> dict[str, Any]:
    """Train one trial; call `report` every eval_every steps; return the summary.

    The summary is `record.summary`: status (converged / censored / diverged), convergence_time
    (None unless converged), steps_run, t_final, final_* metrics, noise_floor, wall_time_s, device_used.
    """
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)  # every random draw of the trial comes from here
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    target = build_target(cfg)
    periodic, dim = target.periodic, target.dim
    draw = target.sample_stratified if cfg.sampler == "stratified" else target.sample

    # only torus targets have a spectrum; enumerating frequencies of a high-D plane set would explode
    freqs = frequencies(dim, cfg.k_max) if target.periodic else None
    exact = target.fourier(freqs) if freqs is not None else None
    if exact is None:
        freqs = None
    active = _active_index(target, freqs)
    # per-mode error scale: |phi_p(k)|, the error of the uniform law.  Particles start uniform, so
    # this is e_k(0); a generator starts far from uniform (a near point mass has e_k(0) ~ 1), and
    # dividing by e_k(0) would call it converged as soon as it spreads out, before any mode is fitted.
    scale = exact.abs() if exact is not None else None
    eval_data = target.sample(cfg.n_eval, eval_gen).to(device)
    spectrum_k = freqs.tolist() if freqs is not None else []

    if cfg.model == "particles":
        x = target.init(cfg.n_samples, gen).to(device).requires_grad_(True)
        net = opt = eval_noise = None
    else:
        net = _Generator(cfg.noise_dim, dim, cfg.hidden, cfg.layers, gen).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        eval_noise = torch.randn(cfg.n_samples, cfg.noise_dim, generator=eval_gen).to(device)

    def samples_now() -> torch.Tensor:
        if net is None:
            return x.detach()
        with torch.no_grad():
            return net(eval_noise)

    h0 = cfg.h0
    fault_step = _fault_step(cfg)
    d0: Optional[float] = None
    status, conv_time, last = record.CENSORED, None, {}
    step = 0
    for step in range(cfg.steps + 1):
        if step == fault_step:
            raise InjectedFailure(f"injected failure at step {fault_step}")
        t = step * cfg.dt
        h = bandwidth_at(cfg.schedule, t, h0, cfg.rate, cfg.bandwidth_min)
        field = FieldSpec(cfg.kernel, h, periodic, True, cfg.bandwidth_scales, cfg.drift_norm, cfg.sinkhorn_iters)
        pos = draw(cfg.n_data, gen).to(device)
        if net is None:
            loss, v = drift_loss(x, pos, cfg.operator, field, cfg.stop_gradient)
            (grad,) = torch.autograd.grad(loss, x)
        else:
            z = torch.randn(cfg.n_samples, cfg.noise_dim, generator=gen).to(device)
            loss, v = drift_loss(net(z), pos, cfg.operator, field, cfg.stop_gradient)
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(v).all())

        if step % cfg.eval_every == 0 or step == cfg.steps or not finite:
            xs = samples_now()
            metrics: dict[str, Any] = {
                "step": step, "t": t, "bandwidth": h, "loss": float(loss.detach()),
                "drift_rms": float(v.square().sum(-1).mean().sqrt()),
            }
            if finite and bool(torch.isfinite(xs).all()):
                err = spectrum_error(xs, freqs, exact) if freqs is not None else None
                dist = energy_distance(xs, eval_data, periodic)
                d0 = dist if d0 is None else d0
                metrics["worst_rel_error"] = _worst_rel(err, scale, active, dist, d0)
                metrics["sample_distance"] = dist
                metrics["spectrum_k"] = spectrum_k
                metrics["spectrum_error"] = err.tolist() if err is not None else []
            else:
                finite = False
                metrics.update(worst_rel_error=math.nan, sample_distance=math.nan, spectrum_k=spectrum_k,
                               spectrum_error=[math.nan] * len(spectrum_k))
            if finite and not all(math.isfinite(metrics[k]) for k in ("loss", "drift_rms", "worst_rel_error",
                                                                     "sample_distance") if metrics.get(k) is not None):
                finite = False  # a NaN/inf metric (e.g. inf - inf in a distance) is divergence, not censoring
            last = metrics
            if report is not None:
                report(metrics)
            if not finite:
                status = record.DIVERGED
                break
            if record.converged(step, metrics["worst_rel_error"], cfg.eps):
                status, conv_time = record.CONVERGED, t
                break
        if step == cfg.steps:
            break
        if net is None:
            with torch.no_grad():
                # x <- x - (dt N / 2) grad: exactly x + dt V under the stop-gradient
                x -= 0.5 * cfg.dt * cfg.n_samples * grad
                if periodic:
                    x.copy_(wrap(x))
        else:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return record.summary(status, last, convergence_time=conv_time, n_samples=cfg.n_samples,
                          wall_time_s=time.perf_counter() - start, device_used=str(device))


def _active_index(target: Target, freqs: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Indices into freqs of the modes the target carries (where relative error is defined)."""
    modes = target.active_modes()
    if freqs is None or modes is None:
        return None
    hit = (freqs.unsqueeze(1) == modes.unsqueeze(0)).all(-1).any(1)  # (F,)
    return torch.nonzero(hit).squeeze(1)


def _worst_rel(err: Optional[torch.Tensor], scale: Optional[torch.Tensor], active: Optional[torch.Tensor],
               dist: float, d0: float) -> float:
    """max_k e_k(t)/|phi_p(k)| over the target's modes; distance ratio d(t)/d(0) for targets without a spectrum."""
    if err is not None and scale is not None and active is not None and active.numel() > 0:
        return float((err[active] / scale[active].clamp_min(1e-300)).max())
    return dist / d0 if d0 > 0 else math.nan
