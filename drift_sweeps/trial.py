"""The one trial loop: `run_trial(config, report)`.  Ray-free; every entry point calls it."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Callable, Optional

import torch

from .spine import record
from .spine.config import TrialConfig
from .core.generators import Generator, GeneratorSpec, build_generator
from .core.loss import drift_loss
from .core.operators import FieldSpec
from .spine.schedules import bandwidth_at
from .core.catalog import make_target
from .core.targets import Target, TargetSpec
from .measure import Evaluation
from .steps import stepper

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
                      cfg.target_modes, dim=cfg.dim, n_modes=cfg.n_modes, layout=cfg.layout,
                      separation=cfg.separation, mode_std=cfg.mode_std, mode_weights=cfg.mode_weights,
                      init=cfg.init, init_weights=cfg.init_weights)
    return make_target(cfg.target, spec)


def build_model(cfg: TrialConfig, target: Target, gen: torch.Generator) -> Generator:
    """The trial's model from the GENERATORS registry (particles start from the target's initial law)."""
    spec = GeneratorSpec(
        dim=target.dim, periodic=target.periodic, noise_dim=cfg.noise_dim, hidden=cfg.hidden, layers=cfg.layers,
        fourier_features=cfg.fourier_features, image_side=target.image_side, n_particles=cfg.n_samples,
        offset=tuple(target.init_loc) if target.init_loc is not None else (), init_particles=target.init,
    )
    return build_generator(cfg.model, spec, gen)


class _Trial:
    """A trial's state between steps: the target, the model and its update step, the evaluation."""

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg, self.device = cfg, resolve_device(cfg.device)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # every random draw of the trial comes from here
        eval_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
        self.target = build_target(cfg)
        self.draw_data = self.target.sample_stratified if cfg.sampler == "stratified" else self.target.sample
        self.evaluation = Evaluation(cfg, self.target, self.device, eval_gen)  # before the model: same draws
        net = build_model(cfg, self.target, self.gen).to(self.device)
        self.model = stepper(cfg, net)
        # the generator's law is measured by quasi-Monte-Carlo: stratified noise, like the data draws
        self.eval_noise = net.noise(cfg.n_eval, eval_gen, stratified=True).to(self.device)

    def loss(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """This step's drift loss, field and samples, and the bandwidth h(t)."""
        cfg = self.cfg
        h = bandwidth_at(cfg.schedule, step * cfg.dt, cfg.h0, cfg.rate, cfg.bandwidth_min)
        pos = self.draw_data(cfg.n_data, self.gen).to(self.device)
        x, neg = self.model.draw(self.gen, self.device)
        loss, v = drift_loss(x, pos, cfg.operator, FieldSpec.of(cfg, h, self.target.periodic), cfg.stop_gradient,
                             neg=neg, feature_norm=cfg.feature_norm)
        return loss, v, x, h

    def evaluate(self, step: int, h: float, loss: torch.Tensor, v: torch.Tensor, finite: bool) -> dict[str, Any]:
        """Every curve metric at this step (record.CURVE_METRICS; None where one does not apply)."""
        xs = self.model.samples(self.eval_noise)
        metrics: dict[str, Any] = {"step": step, "t": step * self.cfg.dt, "bandwidth": h,
                                   "loss": float(loss.detach()), "drift_rms": float(v.square().sum(-1).mean().sqrt())}
        finite = finite and bool(torch.isfinite(xs).all())
        metrics.update(self.evaluation(xs, h) if finite else self.evaluation.failed())
        for name in record.CURVE_METRICS:
            metrics.setdefault(name, None)
        self.finite = finite and all(math.isfinite(metrics[k]) for k in ("loss", "drift_rms", "worst_rel_error",
                                                                         "sample_distance") if metrics[k] is not None)
        self.done = self.finite and self.evaluation.done(metrics)
        if (self.done or not self.finite or step == self.cfg.steps) and self.cfg.samples_kept > 0:
            metrics[record.SAMPLES_KEY] = xs[: self.cfg.samples_kept].detach().cpu().tolist()
        return metrics


def run_trial(cfg: TrialConfig, report: Optional[Report] = None) -> dict[str, Any]:
    """Train one trial; call `report` every eval_every steps; return the summary.

    The summary is `record.summary`: status (converged / censored / diverged), convergence_time
    (None unless converged), steps_run, t_final, final_* metrics, noise_floor, the quality floors,
    wall_time_s, device_used.  A non-finite loss, field or metric is divergence (a NaN/inf metric, e.g.
    inf - inf in a distance, is divergence, not censoring).
    """
    start = time.perf_counter()
    trial = _Trial(cfg)
    fault_step = _fault_step(cfg)
    status, conv_time, last = record.CENSORED, None, {}
    for step in range(cfg.steps + 1):
        if step == fault_step:
            raise InjectedFailure(f"injected failure at step {fault_step}")
        loss, v, x, h = trial.loss(step)
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(v).all())
        if step % cfg.eval_every == 0 or step == cfg.steps or not finite:
            last = trial.evaluate(step, h, loss, v, finite)
            if report is not None:
                report(last)
            if not trial.finite:
                status = record.DIVERGED
                break
            if trial.done:
                status, conv_time = record.CONVERGED, step * cfg.dt
                break
        if step == cfg.steps:
            break
        trial.model.update(loss, v, x, step)
    return record.summary(status, last, convergence_time=conv_time, n_samples=cfg.n_samples,
                          wall_time_s=time.perf_counter() - start, device_used=str(trial.device),
                          floors=trial.evaluation.floors)
