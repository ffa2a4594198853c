"""What a trial measures at an evaluation: one measurer per metric source of `spine.metrics`.

`Evaluation(cfg, target, device, eval_gen)` is built once per trial, before the model (it draws the fixed
evaluation data and the quality floors from `eval_gen`, in that order); calling it on samples returns every
curve metric it can compute (the others stay None) plus the per-frequency errors.  A new metric source is
one `MEASURERS` entry: a factory `(cfg, target, ctx) -> Optional[callable(xs) -> dict]` returning None
where the source does not apply to the target.  A measurer gets at most n_eval x eval_repeats samples (a
particle system's same random subset at every evaluation: the pairwise metrics are O(n^2)), unless it is
marked `ALL_SAMPLES` (`all_samples(measure)`): then it gets every sample and subsets itself with
`Context.subset` where it needs to (the torus spectrum is O(N F) and is measured on all the particles, as its
noise floor is ~1/sqrt(N) per frequency).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from .core import quality
from .core.digits import DigitsTarget, digits_classifier, digits_floors, digits_metrics
from .core.geometry import distance
from .core.metrics import energy_distance, frequencies, spectrum_error
from .core.conservative import asymmetry
from .core.field import FieldSpec
from .core.modes import mode_metrics
from .core.targets import Target
from .spine import record
from .spine.config import TrialConfig
from .spine.metrics import sources_for

Measurer = Callable[[torch.Tensor], dict[str, Any]]


class Context:
    """What the measurers share: the fixed evaluation data, the metric seed, floors found so far."""

    def __init__(self, cfg: TrialConfig, target: Target, eval_data: torch.Tensor, gen: torch.Generator) -> None:
        self.cfg, self.target, self.eval_data, self.gen = cfg, target, eval_data, gen
        self.metric_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))  # one set of directions
        self.floors: dict[str, Any] = {}
        self.spectrum_k: list = []  # the frequencies of the per-frequency errors (torus targets)
        self.bandwidth = cfg.h0  # the field's bandwidth at the evaluation (set by each call)
        self.other: Optional[torch.Tensor] = None  # plane: a second data draw (the data-vs-data floors)
        self.n_eval = cfg.n_eval * cfg.eval_repeats
        self._subset: Optional[torch.Tensor] = None

    def subset(self, xs: torch.Tensor) -> torch.Tensor:
        """At most n_eval x eval_repeats of the samples: a particle system's same random subset at every call."""
        if xs.shape[0] <= self.n_eval:
            return xs
        if self._subset is None:
            gen = torch.Generator().manual_seed(self.metric_seed)
            self._subset = torch.randperm(xs.shape[0], generator=gen)[: self.n_eval].to(xs.device)
        return xs[self._subset]


def all_samples(measure: Measurer) -> Measurer:
    """Mark a measurer as taking every sample (it subsets itself where it needs to)."""
    measure.ALL_SAMPLES = True  # type: ignore[attr-defined]
    return measure


def _spectrum(cfg: TrialConfig, target: Target, ctx: Context) -> Optional[Measurer]:
    """Torus targets: per-frequency errors, the worst relative error over the target's modes and the energy
    distance on the torus (relative to its first value where the target has no spectrum)."""
    if not target.periodic:
        return None
    freqs = frequencies(target.dim, cfg.k_max)
    exact = target.fourier(freqs)
    if exact is None:
        freqs = None
    active = _active_index(target, freqs)
    # per-mode error scale: |phi_p(k)|, the error of the uniform law.  Particles start uniform, so
    # this is e_k(0); a generator starts far from uniform (a near point mass has e_k(0) ~ 1), and
    # dividing by e_k(0) would call it converged as soon as it spreads out, before any mode is fitted.
    scale = exact.abs().clamp_min(1e-300) if exact is not None else None
    spectrum_k = ctx.spectrum_k = freqs.tolist() if freqs is not None else []
    first: list[float] = []

    @all_samples
    def measure(xs: torch.Tensor) -> dict[str, Any]:
        dist = energy_distance(ctx.subset(xs), ctx.eval_data, True)  # pairwise: n_eval of the samples
        if not first:
            first.append(dist)
        out = {"sample_distance": dist, "spectrum_k": spectrum_k, "spectrum_error": []}
        if freqs is not None:
            err = spectrum_error(xs, freqs, exact)  # every sample (every particle)
            out["spectrum_error"] = err.tolist()
            if active is not None and active.numel() > 0:
                out["worst_rel_error"] = float((err[active] / scale[active]).max())
                return out
        out["worst_rel_error"] = dist / first[0] if first[0] > 0 else math.nan
        return out

    return measure


def _plane(cfg: TrialConfig, target: Target, ctx: Context) -> Optional[Measurer]:
    """Plane targets: energy distance, sliced W2 and MMD to the fixed data draw, their data-vs-data floors, and
    the worst relative error as the energy distance's excess over its floor in units of the data's mean
    pairwise distance, max(d - floor, 0) / E|Y - Y'| (independent of where the model starts).  With
    `eval_repeats` R > 1 each metric is the mean over R pairs (generated draw r, data draw r) of n_eval
    samples, each floor the mean over R pairs (second data draw r, data draw r)."""
    if target.periodic:
        return None
    data = ctx.eval_data
    n = min(data.shape[0], 1024)
    unit = float(distance(data[:n], data[:n], False).sum()) / (n * (n - 1))
    scale = quality.rms_scale(data) / math.sqrt(2.0) + 1e-12
    repeats, n_eval = cfg.eval_repeats, cfg.n_eval

    def metrics(xs: torch.Tensor) -> dict[str, Any]:
        sums = {"energy_distance": 0.0, "sliced_w2": 0.0, "mmd2": 0.0}
        for r in range(repeats):  # xs holds R draws, or (particles) one set measured against each data draw
            x_r = xs[r * n_eval:(r + 1) * n_eval] if xs.shape[0] >= repeats * n_eval else xs
            gen = torch.Generator().manual_seed(ctx.metric_seed)  # the same directions for every draw
            out = quality.plane_metrics(x_r, data[r * n_eval:(r + 1) * n_eval], scale, gen)
            for k in sums:
                sums[k] += out[k] / repeats
        return {"sample_distance": sums["energy_distance"], "sliced_w2": sums["sliced_w2"], "mmd2": sums["mmd2"]}

    other = ctx.other = target.sample(cfg.n_eval * repeats, ctx.gen).to(data.device)
    ctx.floors.update({f"{k}_floor": v for k, v in metrics(other).items()})
    floor = ctx.floors["sample_distance_floor"]

    def measure(xs: torch.Tensor) -> dict[str, Any]:
        out = metrics(xs)
        out["worst_rel_error"] = max(out["sample_distance"] - floor, 0.0) / unit if unit else math.nan
        return out

    return measure


def _digits(cfg: TrialConfig, target: Target, ctx: Context) -> Optional[Measurer]:
    """Digits: Frechet distance and class coverage in a small classifier's features, with three references."""
    if not isinstance(target, DigitsTarget):
        return None
    floors = digits_floors(cfg.n_eval, ctx.gen)
    ctx.floors.update({k: floors[k] for k in ("frechet_distance_floor", "frechet_distance_gaussian",
                                              "frechet_distance_noise")})
    ctx.floors["classifier_accuracy"] = digits_classifier().test_accuracy
    return digits_metrics


OT_SAMPLES = 1000  # exact OT is O(n^3): the first 1000 samples of each side (the published toy protocol's size)


def exact_w2(xs: torch.Tensor, ys: torch.Tensor) -> float:
    """Exact squared W2 between the empirical laws of xs and ys (uniform weights, network simplex of POT)."""
    import ot  # imported here: only plane trials need it

    a = xs[:OT_SAMPLES].detach().to("cpu", torch.float64).numpy()
    b = ys[:OT_SAMPLES].detach().to("cpu", torch.float64).numpy()
    return float(ot.emd2([], [], ot.dist(a, b), numItermax=10**7))


def _ot(cfg: TrialConfig, target: Target, ctx: Context) -> Optional[Measurer]:
    """Plane targets: exact W2^2 to the fixed data draw, and its floor between two data draws."""
    if target.periodic or ctx.other is None:
        return None
    ctx.floors["w2_exact_floor"] = exact_w2(ctx.other, ctx.eval_data)
    return lambda xs: {"w2_exact": exact_w2(xs, ctx.eval_data)}


def _modes(cfg: TrialConfig, target: Target, ctx: Context) -> Optional[Measurer]:
    """Targets with known modes (`Target.mixture`): modes covered, high-quality share, mode-mass error, JS of the
    mode histogram (core/modes.py), and their values for a second data draw (the floors)."""
    mixture = getattr(target, "mixture", None)
    if mixture is None:
        return None
    if ctx.other is not None:
        ctx.floors.update({f"{k}_floor": v for k, v in mode_metrics(ctx.other, mixture).items()})
    return lambda xs: mode_metrics(xs, mixture)


JACOBIAN_POINTS, JACOBIAN_SAMPLES, JACOBIAN_MAX_DIM = 32, 256, 16  # dV/dx costs D backward passes per point


def _jacobian(cfg: TrialConfig, target: Target, ctx: Context) -> Optional[Measurer]:
    """d >= 2: how far the field at the current bandwidth is from a gradient field (core/conservative.py)."""
    if not 2 <= target.dim <= JACOBIAN_MAX_DIM:
        return None

    def measure(xs: torch.Tensor) -> dict[str, Any]:
        field = FieldSpec.of(cfg, ctx.bandwidth, target.periodic, neg_is_x=False)
        with torch.enable_grad():
            value = asymmetry(xs[:JACOBIAN_POINTS], ctx.eval_data[:JACOBIAN_SAMPLES], xs[:JACOBIAN_SAMPLES],
                              cfg.operator, field)
        return {"field_asymmetry": value}

    return measure


# metric source -> factory; run in this order (the plane floors draw from the evaluation generator first)
MEASURERS: dict[str, Callable[[TrialConfig, Target, Context], Optional[Measurer]]] = {
    "spectrum": _spectrum,
    "plane": _plane,
    "digits": _digits,
    "ot": _ot,
    "modes": _modes,
    "jacobian": _jacobian,
}


class Evaluation:
    """Every metric of an evaluation; `floors` holds the trial's FLOOR_FIELDS values."""

    def __init__(self, cfg: TrialConfig, target: Target, device: torch.device, gen: torch.Generator) -> None:
        eval_data = target.sample(cfg.n_eval * cfg.eval_repeats, gen).to(device)
        self.ctx = Context(cfg, target, eval_data, gen)
        wanted = sources_for(cfg.metrics, cfg.converge_on)
        self.measurers = [m for m in (f(cfg, target, self.ctx) for source, f in MEASURERS.items() if source in wanted)
                          if m is not None]
        self.floors = self.ctx.floors
        self.converge_on = cfg.converge_on

    def __call__(self, xs: torch.Tensor, bandwidth: float = 1.0) -> dict[str, Any]:
        """Curve metrics (None where they do not apply) and the spectrum keys of samples xs, whose field is
        at `bandwidth`."""
        self.ctx.bandwidth = bandwidth
        sub = self.ctx.subset(xs)  # many particles: the same random n_eval of them at every eval
        out: dict[str, Any] = {"spectrum_k": self.ctx.spectrum_k, "spectrum_error": []}
        for measure in self.measurers:
            out.update(measure(xs if getattr(measure, "ALL_SAMPLES", False) else sub))
        return out

    def failed(self) -> dict[str, Any]:
        """The metrics of an evaluation whose samples are not finite."""
        spectrum_k = self.ctx.spectrum_k
        return {"worst_rel_error": math.nan, "sample_distance": math.nan, "spectrum_k": spectrum_k,
                "spectrum_error": [math.nan] * len(spectrum_k)}

    def done(self, metrics: dict[str, Any]) -> bool:
        """The convergence rule on this trial's `converge_on` metric."""
        value = metrics.get(self.converge_on)
        return value is not None and bool(record.converged(metrics["step"], value, self.ctx.cfg.eps))


def _active_index(target: Target, freqs: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Indices into freqs of the modes the target carries (where relative error is defined)."""
    modes = target.active_modes()
    if freqs is None or modes is None:
        return None
    hit = (freqs.unsqueeze(1) == modes.unsqueeze(0)).all(-1).any(1)  # (F,)
    return torch.nonzero(hit).squeeze(1)
