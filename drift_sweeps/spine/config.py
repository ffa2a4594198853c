"""The one validated trial configuration.  Every default is defined here, once.

Imports no torch: registry names (kernels, operators, ...) are looked up in the torch-free table
`spine.axes`, so argument parsing, `--help` and the analysis can use `TrialConfig` and its field
types without loading the math.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

from . import axes, metrics
from .schedules import initial_bandwidth
from .theory import DEFAULT_SHAPE
from .torus import TORUS3D_K_MAX, TORUS_DIMS


class ConfigError(ValueError):
    """A bad trial configuration; the message names the key and what is allowed; `key` is that key."""

    def __init__(self, message: str, key: Optional[str] = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class TrialConfig:
    """One drift-training trial.  Build with `TrialConfig.from_dict` to validate raw input."""

    # what to fit
    target: str = "torus1d"  # registry name: torus1d, torus2d, torus3d, checkerboard, gaussian_grid, swiss_roll,
    #                          file, bimodal_between/_far/_collapsed, eight_gaussians, moons, digits, mixture
    k_max: int = 4  # highest frequency (torus) / cells or modes per side (plane sets)
    k_min: int = 1  # lowest frequency carried by a torus target
    target_modes: str = "band"  # torus targets: "band" carries k_min..k_max, "single" only k_max
    amplitude: float = 0.8  # torus targets: total cosine amplitude, < 1 keeps p positive
    phase: str = "random"  # torus targets: "random" (seeded by target_seed) or "zero"
    target_seed: int = 0  # fixes the target itself, independent of the trial seed
    target_path: Optional[str] = None  # for target = file: .npy or .parquet with an (N, D) array
    # the mixture family (target = mixture, core/mixture.py): sum_j p_j N(c_j, mode_std^2 I) on R^dim
    dim: int = 2  # mixture: dimension D, 1..16
    n_modes: int = 2  # mixture: number of modes K
    layout: str = "line"  # mixture: line (first axis), ring (first two axes, dim >= 2), grid (g x g in the first
    #                       two axes, n_modes = g^2, dim >= 2), random (seeded by target_seed)
    separation: float = 3.0  # mixture: L, distance between neighbouring modes (line, grid: spacing; ring: chord;
    #                          random: smallest pairwise distance)
    mode_std: float = 0.35  # mixture: sigma, every mode's std
    mode_weights: tuple[float, ...] = ()  # mixture: p_j (normalised), one per mode; empty = equal weights
    init: str = "default"  # mixture: the model's initial law: default (N(0, I)), between, far, collapsed,
    #                        imbalanced (core/mixture.py defines each)
    init_weights: tuple[float, ...] = ()  # init = imbalanced: the initial weights of the modes (normalised)
    # the drift
    kernel: str = "gaussian"  # registry name: gaussian, laplacian, cauchy, matern32, matern52, rational_quadratic
    operator: str = "meanshift"  # registry name: meanshift, deng, score, mmd, sinkhorn, nystrom
    bandwidth: float = 1.0  # h0, the bandwidth at t = 0
    bandwidth_per_kmax: bool = False  # True: h0 = bandwidth / k_max (the "best fixed h ~ c/K_max" family)
    schedule: str = "constant"  # registry name: constant, exponential
    rate: float = 0.0  # annealing rate r of h(t) = h0 exp(-r t)
    bandwidth_min: float = 0.0  # floor h_min of the exponential schedule
    bandwidth_scales: tuple[float, ...] = (1.0,)  # every operator: fields at bandwidths h*scale, summed
    drift_norm: bool = False  # every operator: divide each bandwidth's field by its batch RMS before summing
    feature_norm: bool = False  # plane targets: scale samples and data by one factor (mean pairwise distance
    #                             sqrt(D), from the batch, no gradient) before the drift; h is in those units
    sinkhorn_iters: int = 50  # sinkhorn: log-domain iterations at most (0 = mean-shift)
    sinkhorn_tol: float = 1e-6  # sinkhorn: stop once no dual potential moves more than this in an iteration
    #                             (units of eps; 0 = always sinkhorn_iters). Large bandwidths converge in 5-10
    kernel_shape: float = DEFAULT_SHAPE  # rational_quadratic: alpha of (1 + r^2/h^2)^-alpha (2.0), > dim/2; alpha =
    #                                      (dim+1)/2 is the Cauchy kernel; other kernels ignore it
    normalization: str = "auto"  # meanshift, deng: auto (the operator's own: per_side, joint), per_side, joint, none
    #                              (raw kernel weights / batch size), sharp (arXiv 2604.06333: a gradient field)
    landmarks: int = 0  # nystrom: landmarks m of the low-rank attraction (0, or m >= n_data: the exact field)
    stop_gradient: bool = True  # False = ablation: differentiate E||V||^2 through V and negatives
    # the model and its optimisation
    model: str = "particles"  # registry name: particles (McKean-Vlasov system), or a one-step generator:
    #                           mlp, fourier (periodic Fourier-feature MLP), resmlp, conv (8x8 images)
    n_samples: int = 1024  # N generated samples (particles, or generator batch)
    n_data: int = 1024  # M data samples (positives) drawn per step
    n_neg: int = 0  # negatives per step: 0 = the generated batch itself (self-pairs masked), else a
    #                 separate generated batch of this size (no gradient)
    sampler: str = "stratified"  # data draws: stratified (low-discrepancy, exact law) or iid
    dt: float = 0.1  # time per step: t = step * dt, for both models
    lr: float = 1e-3  # generators: Adam learning rate
    warmup_steps: int = 0  # generators: linear learning-rate warm-up over this many steps (0 = none)
    lr_decay: str = "none"  # generators: none (lr constant after the warm-up) or cosine (lr x (1 + cos(pi s / steps)) / 2
    #                         at step s: zero at the budget; the last steps average out the minibatch noise)
    ema: float = 0.99  # generators: EMA decay of the weights used for evaluation, min(ema, (1+s)/(10+s)) at
    #                    step s; 0 = evaluate the trained weights (the EMA averages out minibatch noise)
    noise_sampler: str = "stratified"  # generators: training noise stratified (scrambled Sobol) or iid;
    #                                    evaluation noise is always stratified (the law by quasi-Monte-Carlo)
    hidden: int = 128  # generators: width (channels for conv)
    layers: int = 3  # generators: hidden layers (residual blocks for resmlp)
    noise_dim: int = 8  # generators: input noise dimension
    fourier_features: int = 8  # fourier: harmonics per angle (torus) or random features (plane)
    steps: int = 2000  # step budget in steps (t = step * dt); the trial ends earlier when converged
    eval_every: int = 10  # steps between reports
    eps: float = 0.1  # converged when the metric `converge_on` <= eps
    converge_on: str = "worst_rel_error"  # the metric convergence is defined on (any 'min' metric of spine.metrics)
    stop_at_convergence: bool = True  # false: run every step of the budget (final quality at the budget); the
    #                                   convergence time is still that of the first evaluation meeting eps
    metrics: str = "all"  # what an evaluation computes: all (every metric that applies), or comma-separated metric
    #                       names; the torus spectrum, the plane distances and converge_on's metric always run
    n_eval: int = 1024  # samples used for the sample distance and quality metrics (and their data floors)
    eval_repeats: int = 1  # plane targets: energy distance, sliced W2 and MMD averaged over this many independent
    #                        (generated, data) draws of n_eval each, the floors over as many data-vs-data pairs
    #                        (one draw of each moves a perfect generator's ratio to its floor 0.4-2.6x)
    samples_kept: int = 256  # samples of the last evaluation stored in the `samples` table (0 = none)
    seed: int = 0  # seeds every random draw of the trial
    device: str = "auto"  # auto (cuda if available), cpu or cuda

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def keys(cls) -> list[str]:
        """Every config key, in declaration order."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "config") -> "TrialConfig":
        """Validate a raw mapping (unknown keys, types, ranges) and build the config."""
        types = field_types()
        unknown = sorted(set(raw) - set(types))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: "
                              f"{', '.join(types)}", key=str(unknown[0]))
        values = {k: _coerce(k, v, types[k], where) for k, v in raw.items()}
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}", key=err.key) from None

    @property
    def h0(self) -> float:
        """The bandwidth at t = 0 (bandwidth, or bandwidth / k_max with bandwidth_per_kmax)."""
        return initial_bandwidth(self.bandwidth, self.k_max, self.bandwidth_per_kmax)

    def replace(self, **changes: Any) -> "TrialConfig":
        """A validated copy with some keys changed."""
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists), JSON-serialisable."""
        d = dataclasses.asdict(self)
        d["bandwidth_scales"] = list(self.bandwidth_scales)
        d["mode_weights"], d["init_weights"] = list(self.mode_weights), list(self.init_weights)
        return d

    def to_json(self) -> str:
        """Stable JSON text of the config."""
        return json.dumps(self.to_dict(), sort_keys=True)


@functools.lru_cache(maxsize=None)
def field_types() -> dict[str, Any]:
    """Every config key -> its Python type (bool, int, float, str, Optional[str], tuple[float, ...])."""
    hints = typing.get_type_hints(TrialConfig)
    return {f.name: hints[f.name] for f in fields(TrialConfig)}


def defaults() -> dict[str, Any]:
    """Every config key -> its default (what a row of an older sweep lacking the key means)."""
    return {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in fields(TrialConfig)}


def type_name(tp: Any) -> str:
    """A readable name of a config type for messages: bool, int, float, str, str or null, list of floats."""
    return _TYPE_NAMES.get(tp, str(tp))


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", Optional[str]: "str or null",
               tuple[float, ...]: "list of floats"}

# Keys that may differ between the configurations of one packed trial (`pack: P`): they change values, not
# shapes or code paths, so the trials still share one batched step.  Every other key is the same in a pack.
PACK_FREE_KEYS = ("seed", "target_seed", "amplitude", "phase", "k_max", "k_min", "target_modes", "separation",
                  "mode_std", "mode_weights", "init_weights", "bandwidth", "bandwidth_per_kmax", "rate",
                  "bandwidth_min", "dt", "lr", "warmup_steps", "lr_decay", "ema", "steps", "eval_every", "eps",
                  "stop_at_convergence")
LR_DECAYS = ("none", "cosine")  # lr_decay: the generator's learning-rate schedule after its warm-up (steps.lr_factor)
NORMALIZATIONS = ("auto", "per_side", "joint", "none", "sharp")  # normalization: the kernel weights' normalisations
NORMALIZED_OPERATORS = ("meanshift", "deng")  # the operators whose normalisation is the key `normalization`

MIXTURE_LAYOUTS = ("line", "ring", "grid", "random")  # mixture: where the modes sit (core/mixture.py)
MIXTURE_INITS = ("default", "between", "far", "collapsed", "imbalanced")  # mixture: the model's initial laws
MIXTURE_MAX_DIM = 16  # mixture: highest dim


def registry_names(key: str) -> list[str]:
    """The names allowed for a registry-backed key (the torch-free table `spine.axes`)."""
    return axes.names(key)


_CHOICES = {
    **{key: functools.partial(registry_names, key) for key in axes.AXES},
    "noise_sampler": lambda: ["stratified", "iid"],
    "lr_decay": lambda: list(LR_DECAYS),
    "phase": lambda: ["random", "zero"],
    "target_modes": lambda: ["band", "single"],
    "sampler": lambda: ["stratified", "iid"],
    "device": lambda: ["auto", "cpu", "cuda"],
    "layout": lambda: list(MIXTURE_LAYOUTS),
    "normalization": lambda: list(NORMALIZATIONS),
    "init": lambda: list(MIXTURE_INITS),
    "converge_on": metrics.quality_metrics,
}

# Bounds every value of a type respects, whatever the key (what Parquet, torch and JSON can hold).
INT_MAX = 2**63 - 1  # int64 columns, torch seeds
MAX_STR_LEN = 4096  # strings (names, paths)
MAX_LIST_LEN = 64  # list-valued keys (bandwidth_scales)
_MAY_BE_EMPTY = {"mode_weights", "init_weights"}  # list keys where [] means "not given" (equal weights / unused)

# key -> highest allowed value (what the code and one machine can handle)
_UPPER = {
    "k_max": 4096, "k_min": 4096,  # frequencies enumerated per eval: (2 k_max + 1)^dim
    "n_samples": 10**7, "n_data": 10**7, "n_eval": 10**7, "eval_repeats": 1024,  # (N, dim) tensors and N x M kernel blocks
    "hidden": 65536, "layers": 1024, "noise_dim": 65536, "sinkhorn_iters": 10**6,
    "steps": 10**9, "eval_every": 10**9,
    "seed": INT_MAX - 1_000_003, "target_seed": INT_MAX,  # the eval draws are seeded by seed + 1_000_003
    "landmarks": 10**7,
    "dim": MIXTURE_MAX_DIM, "n_modes": 1024,  # mixture: nearest-mode search is N x n_modes per evaluation
}

# key -> (lowest allowed, strict?) ; strict means the bound itself is not allowed
_LOWER = {
    "k_max": (1, False), "k_min": (1, False), "amplitude": (0.0, True), "bandwidth": (0.0, True),
    "rate": (0.0, False), "bandwidth_min": (0.0, False), "sinkhorn_iters": (0, False), "sinkhorn_tol": (0.0, False),
    "n_samples": (2, False), "n_data": (2, False), "dt": (0.0, True), "lr": (0.0, True),
    "hidden": (1, False), "layers": (1, False), "noise_dim": (1, False), "steps": (1, False),
    "eval_every": (1, False), "eps": (0.0, True), "n_eval": (2, False), "eval_repeats": (1, False), "target_seed": (0, False),
    "seed": (0, False), "n_neg": (0, False), "warmup_steps": (0, False), "ema": (0.0, False),
    "samples_kept": (0, False),
    "fourier_features": (1, False),
    "kernel_shape": (0.0, True), "landmarks": (0, False),
    "dim": (1, False), "n_modes": (1, False), "separation": (0.0, True), "mode_std": (0.0, True),
}


def _coerce(key: str, value: Any, tp: Any, where: str) -> Any:
    """Type-check one raw value; ints are accepted for float keys, a number or a list for tuple keys."""
    ok: bool
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif tp == Optional[str]:
        ok = value is None or isinstance(value, str)
    elif tp == tuple[float, ...]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        ok = isinstance(value, (list, tuple)) and (len(value) > 0 or key in _MAY_BE_EMPTY) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        )
        value = tuple(float(v) for v in value) if ok else value
    else:  # pragma: no cover - a new field type must be handled above
        raise TypeError(f"unhandled config type {tp} for {key}")
    if not ok:
        raise ConfigError(f"{where}: key {key!r} must be {type_name(tp)}, got {_shown(value)} ({type(value).__name__})",
                          key=key)
    _check_representable(key, value, where)
    return value


def _shown(value: Any, limit: int = 80) -> str:
    """repr of a value for a one-line message, shortened."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


def _check_representable(key: str, value: Any, where: str) -> None:
    """Whatever the key: non-finite floats, integers beyond int64, overlong strings or lists are errors."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: key {key!r} must be a finite number, got {value!r}", key=key)
    if isinstance(value, int) and not isinstance(value, bool) and not -INT_MAX <= value <= INT_MAX:
        raise ConfigError(f"{where}: key {key!r} = {_shown(value, 40)} out of range; allowed: |value| <= 2^63-1 "
                          "(int64)", key=key)
    if isinstance(value, str) and len(value) > MAX_STR_LEN:
        raise ConfigError(f"{where}: key {key!r} is {len(value)} characters long; allowed: at most {MAX_STR_LEN}",
                          key=key)
    if isinstance(value, tuple):
        if len(value) > MAX_LIST_LEN:
            raise ConfigError(f"{where}: key {key!r} has {len(value)} values; allowed: at most {MAX_LIST_LEN}", key=key)
        bad = [v for v in value if not math.isfinite(v)]
        if bad:
            raise ConfigError(f"{where}: key {key!r} must hold finite numbers, got {bad[0]!r}", key=key)


def _validate(cfg: TrialConfig) -> None:
    for key, allowed in _CHOICES.items():
        value = getattr(cfg, key)
        if value not in allowed():
            raise ConfigError(f"key {key!r}: unknown value {value!r}; allowed: {', '.join(allowed())}", key=key)
    for key, (low, strict) in _LOWER.items():
        value = getattr(cfg, key)
        if value < low or (strict and value == low):
            raise ConfigError(f"key {key!r} = {value!r} out of range; allowed: {'>' if strict else '>='} {low}", key=key)
    for key, high in _UPPER.items():
        value = getattr(cfg, key, None)
        if value is not None and value > high:
            raise ConfigError(f"key {key!r} = {value!r} out of range; allowed: <= {high}", key=key)
    rules = [
        ("k_min", cfg.k_min <= cfg.k_max, f"= {cfg.k_min} must be <= k_max = {cfg.k_max}"),
        ("amplitude", cfg.target not in TORUS_DIMS or cfg.amplitude < 1.0,
         f"= {cfg.amplitude} must be < 1 for torus targets (density stays positive)"),
        ("bandwidth_min", cfg.bandwidth_min <= cfg.bandwidth,
         f"= {cfg.bandwidth_min} must be <= bandwidth = {cfg.bandwidth}"),
        ("bandwidth_scales", all(s > 0 for s in cfg.bandwidth_scales),
         f"= {list(cfg.bandwidth_scales)}: every scale must be > 0"),
        ("rate", cfg.schedule != "exponential" or cfg.rate > 0.0, "must be > 0 when schedule = 'exponential'"),
        ("target_path", cfg.target != "file" or bool(cfg.target_path), "is required when target = 'file'"),
        ("eps", cfg.eps < 1.0, f"= {cfg.eps} out of range; allowed: 0 < eps < 1"),
        ("ema", cfg.ema < 1.0, f"= {cfg.ema} out of range; allowed: 0 <= ema < 1"),
        ("feature_norm", not (cfg.feature_norm and cfg.target in TORUS_DIMS),
         "must be false for torus targets (their distances are angles)"),
        ("metrics", cfg.metrics == "all" or not metrics.unknown(cfg.metrics),
         f"= {cfg.metrics!r}: unknown metric(s) {', '.join(metrics.unknown(cfg.metrics))}; allowed: all, or "
         f"comma-separated names of {', '.join(m.name for m in metrics.METRICS)}"),
    ] + _mixture_rules(cfg) + _drift_rules(cfg)
    for key, ok, why in rules:
        if not ok:
            raise ConfigError(f"key {key!r} {why}", key=key)


def _weights_ok(weights: tuple[float, ...], k: int) -> bool:
    return len(weights) == k and all(w >= 0 for w in weights) and sum(weights) > 0


def _mixture_rules(cfg: TrialConfig) -> list[tuple[str, bool, str]]:
    """(key, ok, why) of the mixture family's keys and the 3-D torus's k_max."""
    mix, k = cfg.target == "mixture", cfg.n_modes
    return [
        ("k_max", cfg.target != "torus3d" or cfg.k_max <= TORUS3D_K_MAX,
         f"= {cfg.k_max} out of range for torus3d; allowed: <= {TORUS3D_K_MAX}"),
        ("layout", not mix or cfg.layout not in ("ring", "grid") or cfg.dim >= 2,
         f"= {cfg.layout!r} needs dim >= 2, got dim = {cfg.dim}"),
        ("n_modes", not mix or cfg.layout != "grid" or math.isqrt(k) ** 2 == k,
         f"= {k} must be a square (g x g modes) for layout = 'grid'"),
        ("mode_weights", not mix or not cfg.mode_weights or _weights_ok(cfg.mode_weights, k),
         f"= {list(cfg.mode_weights)}: need n_modes = {k} non-negative numbers with a positive sum, or []"),
        ("init", cfg.init == "default" or mix, f"= {cfg.init!r} needs target = 'mixture' (other targets: 'default')"),
        ("init_weights", cfg.init != "imbalanced" or _weights_ok(cfg.init_weights, k),
         f"= {list(cfg.init_weights)}: init = 'imbalanced' needs n_modes = {k} non-negative numbers with a "
         "positive sum"),
    ]


def _drift_rules(cfg: TrialConfig) -> list[tuple[str, bool, str]]:
    """(key, ok, why) of the kernel shape (on the torus) and the normalisation."""
    dim = TORUS_DIMS.get(cfg.target, cfg.dim if cfg.target == "mixture" else None)
    rq, sharp, torus = cfg.kernel == "rational_quadratic", cfg.normalization == "sharp", cfg.target in TORUS_DIMS
    alpha_min = 1.0 + dim / 2 if torus else 1.0  # sharp kernel ~ r^(2 - 2 alpha): summable over images iff > dim
    return [
        ("kernel_shape", not rq or not torus or cfg.kernel_shape > dim / 2,
         f"= {cfg.kernel_shape} out of range for rational_quadratic on the {dim}-D torus; allowed: > {dim}/2 (the "
         "kernel must be integrable for its image sum to converge)"),
        ("landmarks", not (cfg.operator == "nystrom" and cfg.landmarks > 0 and torus),
         f"= {cfg.landmarks}: the Nystrom drift is for plane targets (on the torus the displacement is not linear "
         "in the data point); use landmarks = 0 (the exact field) or a plane target"),
        ("normalization", cfg.normalization == "auto" or cfg.operator in NORMALIZED_OPERATORS,
         f"= {cfg.normalization!r} needs operator in {', '.join(NORMALIZED_OPERATORS)} (others: 'auto')"),
        ("normalization", not sharp or not rq or cfg.kernel_shape > alpha_min,
         f"= 'sharp' with rational_quadratic needs kernel_shape > {alpha_min} (its sharp kernel "
         f"(1 + r^2/h^2)^(1-alpha) must be integrable{', and summable over the torus images' if torus else ''}), "
         f"got {cfg.kernel_shape}"),
        ("normalization", not sharp or cfg.kernel != "cauchy" or (dim != 1 and not torus),
         "= 'sharp' with the Cauchy kernel needs a plane target of dim >= 2 (its sharp kernel ~ r^-(dim-1) is "
         "not integrable in 1-D nor summable over a torus's images)"),
    ]
