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
from .core.loss import drift_loss, drift_losses
from .core.operators import FieldSpec
from .spine.schedules import bandwidth_at
from .core.catalog import make_target
from .core.spectral_plan import forget as forget_plans
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
    """JSON of the package versions in this process (cached): `record.versions` with torch's own."""
    global _VERSIONS
    if _VERSIONS is None:
        from . import __version__

        _VERSIONS = record.versions(__version__, torch.__version__, torch.version.cuda)
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
        # the generator's law is measured the way its reference is: on the torus by quasi-Monte-Carlo (stratified
        # noise: the spectrum is compared with the closed form, and modes below the i.i.d. noise are resolved); on
        # the plane by i.i.d. draws, since every plane metric is compared with a floor between two i.i.d. data
        # draws (stratified noise scores a perfect generator at about 0.6 of that floor on eight Gaussians:
        # docs/reproduction_generators.md, section 8)
        self.eval_noise = net.noise(cfg.n_eval * cfg.eval_repeats, eval_gen,
                                    stratified=self.target.periodic).to(self.device)

    def inputs(self, step: int) -> tuple[float, torch.Tensor, torch.Tensor, Optional[torch.Tensor], FieldSpec]:
        """This step's bandwidth h(t), data batch, samples, negatives and field (the draws in a fixed order)."""
        cfg = self.cfg
        h = bandwidth_at(cfg.schedule, step * cfg.dt, cfg.h0, cfg.rate, cfg.bandwidth_min)
        pos = self.draw_data(cfg.n_data, self.gen).to(self.device)
        x, neg = self.model.draw(self.gen, self.device)
        return h, pos, x, neg, FieldSpec.of(cfg, h, self.target.periodic)

    def loss(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """This step's drift loss, field and samples, and the bandwidth h(t)."""
        h, pos, x, neg, field = self.inputs(step)
        loss, v = drift_loss(x, pos, self.cfg.operator, field, self.cfg.stop_gradient, neg=neg,
                             feature_norm=self.cfg.feature_norm)
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
        self.stops = not self.finite or (self.done and self.cfg.stop_at_convergence)
        if (self.stops or step == self.cfg.steps) and self.cfg.samples_kept > 0:
            metrics[record.SAMPLES_KEY] = xs[: self.cfg.samples_kept].detach().cpu().tolist()
        return metrics


class _Run:
    """One configuration's run through the trial loop: its trial, its status, its reports."""

    def __init__(self, cfg: TrialConfig, report: Optional[Report], start: float) -> None:
        self.cfg, self.report, self.start = cfg, report, start
        self.trial = _Trial(cfg)
        self.fault_step = _fault_step(cfg)
        self.status, self.conv_time, self.last = record.CENSORED, None, {}
        self.finished = False
        self.wall_time_s: Optional[float] = None

    def advance(self, step: int, loss: torch.Tensor, v: torch.Tensor, x: torch.Tensor, h: float) -> None:
        """After this step's loss: evaluate when due (report, stop on convergence or divergence), else move."""
        cfg, trial = self.cfg, self.trial
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(v).all())
        if step % cfg.eval_every == 0 or step == cfg.steps or not finite:
            self.last = trial.evaluate(step, h, loss, v, finite)
            if self.report is not None:
                self.report(self.last)
            if not trial.finite:
                self.status = record.DIVERGED
            elif trial.done and self.conv_time is None:  # the first evaluation meeting eps
                self.status, self.conv_time = record.CONVERGED, step * cfg.dt
            if trial.stops:
                return self._finish()
        if step == cfg.steps:
            return self._finish()
        trial.model.update(loss, v, x, step)

    def _finish(self) -> None:
        self.finished, self.wall_time_s = True, time.perf_counter() - self.start

    def summary(self) -> dict[str, Any]:
        return record.summary(self.status, self.last, convergence_time=self.conv_time, n_samples=self.cfg.n_samples,
                              wall_time_s=self.wall_time_s, device_used=str(self.trial.device),
                              threads=torch.get_num_threads(),
                              floors=self.trial.evaluation.floors)


def _losses(runs: list[_Run], step: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """This step's (loss, V, samples, h) of each run: one batched field per group of runs that share the
    operator and the field (`drift_losses`), each run's own call otherwise."""
    if len(runs) == 1:
        return [runs[0].trial.loss(step)]
    inputs = [r.trial.inputs(step) for r in runs]  # every run's draws, in the order a lone trial makes them
    groups: dict[Any, list[int]] = {}
    for i, (r, (_, _, _, neg, field)) in enumerate(zip(runs, inputs)):
        c = r.cfg
        key = (c.operator, repr(field), c.feature_norm, neg is None) if c.stop_gradient else ("alone", i)
        groups.setdefault(key, []).append(i)
    out: list[Any] = [None] * len(runs)
    for key, idx in groups.items():
        c = runs[idx[0]].cfg
        if key[0] == "alone":
            h, pos, x, neg, field = inputs[idx[0]]
            loss, v = drift_loss(x, pos, c.operator, field, c.stop_gradient, neg=neg, feature_norm=c.feature_norm)
            out[idx[0]] = (loss, v, x, h)
            continue
        xs, poss, negs = ([inputs[i][j] for i in idx] for j in (2, 1, 3))
        for i, (loss, v) in zip(idx, drift_losses(xs, poss, negs, c.operator, inputs[idx[0]][4], c.feature_norm)):
            out[i] = (loss, v, inputs[i][2], inputs[i][0])
    return out


def run_pack(cfgs: list[TrialConfig], reports: Optional[list[Optional[Report]]] = None,
             on_finish: Optional[Callable[[int, dict[str, Any]], None]] = None) -> list[dict[str, Any]]:
    """Train several configurations in lockstep (a packed trial, `pack: P`); -> their summaries, in order.

    Each one runs exactly as it would alone (its own random draws, evaluations, reports and early stop);
    at every step the fields of the runs that share the operator and the field are one batched computation.
    A run's wall_time_s is the pack's elapsed time when that run finished; `on_finish(index, summary)` is
    called as each one finishes.
    """
    start = time.perf_counter()
    forget_plans()  # the same runs give the same numbers, whatever ran before them in this process
    runs = [_Run(cfg, rep, start) for cfg, rep in zip(cfgs, reports or [None] * len(cfgs))]
    for step in range(max(c.steps for c in cfgs) + 1):
        live = [r for r in runs if not r.finished]
        if not live:
            break
        for r in live:
            if step == r.fault_step:
                raise InjectedFailure(f"injected failure at step {r.fault_step}")
        for r, out in zip(live, _losses(live, step)):
            r.advance(step, *out)
            if r.finished and on_finish is not None:
                on_finish(runs.index(r), r.summary())
    return [r.summary() for r in runs]


def run_trial(cfg: TrialConfig, report: Optional[Report] = None) -> dict[str, Any]:
    """Train one trial; call `report` every eval_every steps; return the summary.

    The summary is `record.summary`: status (converged / censored / diverged), convergence_time
    (None unless converged), steps_run, t_final, final_* metrics, noise_floor, the quality floors,
    wall_time_s, device_used.  A non-finite loss, field or metric is divergence (a NaN/inf metric, e.g.
    inf - inf in a distance, is divergence, not censoring).
    """
    return run_pack([cfg], [report])[0]
