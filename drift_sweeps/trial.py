"""The one trial loop: `run_trial(config, report)`.  Ray-free; every entry point calls it."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from typing import Any, Callable, Optional

import torch

from .spine import record
from .spine.config import TrialConfig
from .core import quality
from .core.digits import DigitsTarget, digits_classifier, digits_floors, digits_metrics
from .core.generators import Generator, GeneratorSpec, build_generator
from .core.geometry import distance
from .core.loss import drift_loss
from .core.metrics import energy_distance, frequencies, spectrum_error
from .core.operators import FieldSpec
from .spine.schedules import bandwidth_at
from .core.catalog import make_target
from .core.targets import Target, TargetSpec

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


_VERSIONS: Optional[str] = None


def versions() -> str:
    """JSON of the package versions in this process (cached); ray is null where it is not installed."""
    global _VERSIONS
    if _VERSIONS is None:
        import importlib.metadata
        import platform

        import numpy

        from . import __version__

        try:
            ray_version: Optional[str] = importlib.metadata.version("ray")
        except importlib.metadata.PackageNotFoundError:
            ray_version = None
        _VERSIONS = json.dumps({
            "python": platform.python_version(), "drift_sweeps": __version__, "torch": torch.__version__,
            "cuda": torch.version.cuda, "ray": ray_version, "numpy": numpy.__version__,
        }, sort_keys=True)
    return _VERSIONS


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


def build_model(cfg: TrialConfig, target: Target, gen: torch.Generator) -> Generator:
    """The trial's model from the GENERATORS registry (particles start from the target's initial law)."""
    spec = GeneratorSpec(
        dim=target.dim, periodic=target.periodic, noise_dim=cfg.noise_dim, hidden=cfg.hidden, layers=cfg.layers,
        fourier_features=cfg.fourier_features, image_side=target.image_side, n_particles=cfg.n_samples,
        offset=tuple(target.init_loc) if target.init_loc is not None else (), init_particles=target.init,
    )
    return build_generator(cfg.model, spec, gen)


class _Quality:
    """Sample-quality metrics of plane targets against a fixed data draw, and their data-vs-data floors."""

    def __init__(self, cfg: TrialConfig, target: Target, eval_data: torch.Tensor, gen: torch.Generator) -> None:
        self.target, self.eval_data = target, eval_data
        self.n_eval = cfg.n_eval
        self._subset: Optional[torch.Tensor] = None
        self.metric_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))  # one set of directions
        self.floors: dict[str, Any] = {}
        self.unit: Optional[float] = None  # plane: the data's mean pairwise distance E|Y - Y'|
        if target.periodic:
            return
        n = min(eval_data.shape[0], 1024)
        self.unit = float(distance(eval_data[:n], eval_data[:n], False).sum()) / (n * (n - 1))
        self.scale = quality.rms_scale(eval_data) / math.sqrt(2.0) + 1e-12
        other = target.sample(cfg.n_eval, gen).to(eval_data.device)
        base = self.plane(other)
        self.floors = {f"{k}_floor": v for k, v in base.items()}
        if isinstance(target, DigitsTarget):
            floors = digits_floors(cfg.n_eval, gen)
            self.floors.update({k: floors[k] for k in ("frechet_distance_floor", "frechet_distance_gaussian",
                                                       "frechet_distance_noise")})
            self.floors["classifier_accuracy"] = digits_classifier().test_accuracy

    def plane(self, xs: torch.Tensor) -> dict[str, float]:
        gen = torch.Generator().manual_seed(self.metric_seed)
        out = quality.plane_metrics(xs, self.eval_data, self.scale, gen)
        return {"sample_distance": out["energy_distance"], "sliced_w2": out["sliced_w2"], "mmd2": out["mmd2"]}

    def __call__(self, xs: torch.Tensor) -> dict[str, Any]:
        """Every quality metric of record.CURVE_METRICS that applies (the others are None)."""
        out: dict[str, Any] = {k: None for k in ("sliced_w2", "mmd2", "frechet_distance", "class_coverage",
                                                "class_kl", "class_max_deviation")}
        if xs.shape[0] > self.n_eval:  # many particles: the same random n_eval of them at every eval
            if self._subset is None:
                gen = torch.Generator().manual_seed(self.metric_seed)
                self._subset = torch.randperm(xs.shape[0], generator=gen)[: self.n_eval].to(xs.device)
            xs = xs[self._subset]
        if self.target.periodic:
            out["sample_distance"] = energy_distance(xs, self.eval_data, True)
            return out
        out.update(self.plane(xs))
        if isinstance(self.target, DigitsTarget):
            out.update(digits_metrics(xs))
        return out


def _ema_decay(ema: float, step: int) -> float:
    """EMA decay at step s: min(ema, (1 + s) / (10 + s)), so early weights are not remembered for long."""
    return min(ema, (1.0 + step) / (10.0 + step))


def run_trial(cfg: TrialConfig, report: Optional[Report] = None) -> dict[str, Any]:
    """Train one trial; call `report` every eval_every steps; return the summary.

    The summary is `record.summary`: status (converged / censored / diverged), convergence_time
    (None unless converged), steps_run, t_final, final_* metrics, noise_floor, the quality floors,
    wall_time_s, device_used.
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
    measure = _Quality(cfg, target, eval_data, eval_gen)

    net = build_model(cfg, target, gen).to(device)
    particles = net.particle_system
    ema = opt = None
    if not particles:
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        if cfg.ema > 0:
            ema = copy.deepcopy(net).requires_grad_(False)
    stratified_noise = cfg.noise_sampler == "stratified"
    # the generator's law is measured by quasi-Monte-Carlo: stratified noise, like the data draws
    eval_noise = net.noise(cfg.n_eval, eval_gen, stratified=True).to(device)

    def samples_now() -> torch.Tensor:
        with torch.no_grad():
            return (ema if ema is not None else net)(eval_noise)

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
        neg = None  # negatives: the generated batch itself unless n_neg asks for a separate one
        if particles:
            x = net.x
        else:
            x = net(net.noise(cfg.n_samples, gen, stratified_noise).to(device))
            if cfg.n_neg > 0:
                with torch.no_grad():
                    neg = net(net.noise(cfg.n_neg, gen, stratified_noise).to(device))
        loss, v = drift_loss(x, pos, cfg.operator, field, cfg.stop_gradient, neg=neg, feature_norm=cfg.feature_norm)
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(v).all())

        if step % cfg.eval_every == 0 or step == cfg.steps or not finite:
            xs = samples_now()
            metrics: dict[str, Any] = {
                "step": step, "t": t, "bandwidth": h, "loss": float(loss.detach()),
                "drift_rms": float(v.square().sum(-1).mean().sqrt()),
            }
            if finite and bool(torch.isfinite(xs).all()):
                err = spectrum_error(xs, freqs, exact) if freqs is not None else None
                metrics.update(measure(xs))
                dist = metrics["sample_distance"]
                d0 = dist if d0 is None else d0
                metrics["worst_rel_error"] = _worst_rel(err, scale, active, dist, d0,
                                                        measure.floors.get("sample_distance_floor"), measure.unit)
                metrics["spectrum_k"] = spectrum_k
                metrics["spectrum_error"] = err.tolist() if err is not None else []
            else:
                finite = False
                metrics.update(worst_rel_error=math.nan, sample_distance=math.nan, spectrum_k=spectrum_k,
                               spectrum_error=[math.nan] * len(spectrum_k))
            if finite and not all(math.isfinite(metrics[k]) for k in ("loss", "drift_rms", "worst_rel_error",
                                                                     "sample_distance") if metrics.get(k) is not None):
                finite = False  # a NaN/inf metric (e.g. inf - inf in a distance) is divergence, not censoring
            for name in record.CURVE_METRICS:
                metrics.setdefault(name, None)
            done = record.converged(step, metrics["worst_rel_error"], cfg.eps)
            if (done or not finite or step == cfg.steps) and cfg.samples_kept > 0:
                metrics[record.SAMPLES_KEY] = xs[: cfg.samples_kept].detach().cpu().tolist()
            last = metrics
            if report is not None:
                report(metrics)
            if not finite:
                status = record.DIVERGED
                break
            if done:
                status, conv_time = record.CONVERGED, t
                break
        if step == cfg.steps:
            break
        if particles:
            if cfg.stop_gradient:
                net.euler_step_(v, cfg.dt)  # x <- x + dt V
            else:
                (grad,) = torch.autograd.grad(loss, x)
                # x <- x - (dt N / 2) grad: the same step size as x + dt V under the stop-gradient
                net.euler_step_(-0.5 * cfg.n_samples * grad, cfg.dt)
        else:
            if cfg.warmup_steps > 0:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    decay = _ema_decay(cfg.ema, step)
                    for pe, p in zip(ema.parameters(), net.parameters()):
                        pe.lerp_(p, 1.0 - decay)

    return record.summary(status, last, convergence_time=conv_time, n_samples=cfg.n_samples,
                          wall_time_s=time.perf_counter() - start, device_used=str(device), floors=measure.floors)


def _active_index(target: Target, freqs: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Indices into freqs of the modes the target carries (where relative error is defined)."""
    modes = target.active_modes()
    if freqs is None or modes is None:
        return None
    hit = (freqs.unsqueeze(1) == modes.unsqueeze(0)).all(-1).any(1)  # (F,)
    return torch.nonzero(hit).squeeze(1)


def _worst_rel(err: Optional[torch.Tensor], scale: Optional[torch.Tensor], active: Optional[torch.Tensor],
               dist: float, d0: float, floor: Optional[float] = None, unit: Optional[float] = None) -> float:
    """max_k e_k(t)/|phi_p(k)| over the target's modes.  Plane targets: the energy distance's excess
    over its data-vs-data floor in units of the data's mean pairwise distance, max(d - floor, 0) / E|Y-Y'|
    (independent of where the model starts).  Otherwise d(t)/d(0)."""
    if err is not None and scale is not None and active is not None and active.numel() > 0:
        return float((err[active] / scale[active].clamp_min(1e-300)).max())
    if floor is not None and unit:
        return max(dist - floor, 0.0) / unit
    return dist / d0 if d0 > 0 else math.nan
