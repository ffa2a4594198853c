"""Search spaces as data: load a `search_spaces/*.yaml` file and validate it against TrialConfig.

Ray-free on purpose: a space is checked completely (every key, every axis value, every grid point)
before any cluster work starts.  The Tune adapter turns a validated `SearchSpace` into a
`param_space`; `SearchSpace.resolve` turns the parameters Tune chose back into a `TrialConfig`.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import yaml

from . import record
from .config import ConfigError, TrialConfig, defaults, field_types, type_name

SEARCHES = ("grid", "random", "optuna")
DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint")
SCHEDULERS = ("asha",)
MODES = ("min", "max")
# Metrics a space may optimise: every reported curve metric plus the searcher objective.
METRICS = (record.OBJECTIVE, *(m for m in record.CURVE_METRICS if m not in ("step", "t", "bandwidth")))
VARIANT_PARAM = "variant"  # the Tune parameter that picks a variant by name
REPLICATE_KEYS = ("seed",)  # axes that repeat a setting rather than define a group of the table
# --smoke: every key is capped at this value (a quick look, not a result).  60 steps reach t = 12 at the
# quickstart's dt = 0.2: its annealed trials converge (t ~ 9-10) and the fixed ones do not, as in the full run.
SMOKE_CAPS = {"steps": 60, "n_samples": 256, "n_data": 256, "n_eval": 256, "eval_every": 5}
_MAX_VALIDATED = 50_000  # grid points checked one by one; beyond this only axes and variants are

# Top-level keys of a space file, with their defaults (None: required or no default).
_FILE_KEYS: dict[str, Any] = {
    "name": None,  # the sweep's name: results go to <results>/<name>/
    "description": "",  # one paragraph: what the sweep shows
    "base": {},  # fixed TrialConfig keys shared by every trial
    "axes": {},  # swept keys: a list is a grid axis, {loguniform|uniform|choice|randint: ...} a distribution
    "variants": [],  # named partial configs crossed with the grid (keys that only make sense together)
    "search": "grid",  # grid | random | optuna
    "metric": "time_to_eps",  # what the searcher / scheduler optimise
    "mode": "min",  # min | max
    "num_samples": 1,  # grid/random: repeats of the grid (x samples); optuna: number of trials
    "seed": 0,  # seeds the searcher (TPE / random sampling), not the trials
    "scheduler": None,  # null | asha | {asha: {grace_period: reports, reduction_factor: 3}}
    "resources": {"cpu": 1, "gpu": 0},  # per trial; gpu applies only when the cluster has GPUs
    "max_concurrent": None,  # cap on trials running at once (null: as many as resources allow)
    "max_failures": 1,  # retries of a trial that raises, before it is recorded as `error`
}
_ASHA_KEYS = {"grace_period": 4, "reduction_factor": 3}


class SpaceError(ValueError):
    """A bad search space or override; the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class Axis:
    """One swept key: a grid (list of values) or a distribution."""

    key: str
    kind: str  # "grid" or one of DISTRIBUTIONS
    values: tuple  # grid/choice: the values; loguniform/uniform/randint: (low, high)

    def corners(self) -> list[Any]:
        """Values that together exercise the axis' range during validation."""
        if self.kind in ("grid", "choice"):
            return list(self.values)
        if self.kind == "randint":
            return [self.values[0], self.values[1] - 1]  # upper bound exclusive, like tune.randint
        return list(self.values)

    def to_yaml(self) -> Any:
        """The axis as written in a space file."""
        return list(self.values) if self.kind == "grid" else {self.kind: list(self.values)}


@dataclass(frozen=True)
class Variant:
    """A named partial config, crossed with the grid."""

    name: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class SearchSpace:
    """A validated sweep definition."""

    name: str
    description: str
    source: str  # file it was read from
    base: Mapping[str, Any]  # partial config, validated keys and types
    axes: tuple[Axis, ...] = ()
    variants: tuple[Variant, ...] = ()
    search: str = "grid"
    metric: str = "time_to_eps"
    mode: str = "min"
    num_samples: int = 1
    seed: int = 0
    scheduler: Optional[Mapping[str, Any]] = None  # {"name": "asha", **options} or None
    cpu: float = 1
    gpu: float = 0
    max_concurrent: Optional[int] = None
    max_failures: int = 1
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set values applied to base
    smoke: bool = False

    # ---- what the sweep varies -------------------------------------------------------------
    def swept_keys(self) -> list[str]:
        """Every config key that differs between trials (axes, then keys the variants set differently)."""
        keys = [a.key for a in self.axes]
        if len(self.variants) > 1:
            for v in self.variants:
                for k in v.values:
                    if k not in keys and len({repr(self._variant_value(w, k)) for w in self.variants}) > 1:
                        keys.append(k)
        return keys

    def group_keys(self) -> list[str]:
        """Swept keys that define the groups of the comparison table (replicate axes like seed excluded)."""
        return [k for k in self.swept_keys() if k not in REPLICATE_KEYS]

    def _variant_value(self, variant: Variant, key: str) -> Any:
        if key in variant.values:
            return variant.values[key]
        return self.base.get(key, _DEFAULTS[key])

    def trial_count(self) -> int:
        """Number of trials the sweep will run."""
        if self.search == "optuna":
            return self.num_samples
        grid = math.prod(len(a.values) for a in self.axes if a.kind == "grid")
        return grid * max(1, len(self.variants)) * self.num_samples

    # ---- from Tune parameters to a trial config --------------------------------------------
    def resolve(self, params: Mapping[str, Any], where: Optional[str] = None) -> TrialConfig:
        """The TrialConfig of one trial from the parameters Tune chose (axis values, variant name)."""
        raw = dict(self.base)
        if self.variants:
            name = params.get(VARIANT_PARAM, self.variants[0].name)
            by_name = {v.name: v for v in self.variants}
            if name not in by_name:
                raise SpaceError(f"{self.source}: unknown variant {name!r}; variants: {', '.join(by_name)}")
            raw.update(by_name[name].values)
        for a in self.axes:
            if a.key in params:
                raw[a.key] = _plain(params[a.key])
        if where is None:
            where = f"{self.source}: trial {_describe(params)}"
        return TrialConfig.from_dict(raw, where=where)

    def grid_points(self) -> Iterator[dict[str, Any]]:
        """Tune parameters of every grid point (distribution axes at each of their corners)."""
        axes = list(self.axes)
        names = [v.name for v in self.variants] or [None]
        for combo in itertools.product(*[a.corners() for a in axes]):
            for name in names:
                params = {a.key: v for a, v in zip(axes, combo)}
                if name is not None:
                    params[VARIANT_PARAM] = name
                yield params

    def trial_configs(self) -> list[dict[str, Any]]:
        """Every trial's full config, in grid order (grid search only; others sample during the run)."""
        if self.search != "grid":
            return []
        configs = [self.resolve(p).to_dict() for p in self.grid_points()]
        return [dict(c) for c in configs for _ in range(self.num_samples)]

    # ---- changes -----------------------------------------------------------------------------
    def with_overrides(self, overrides: Mapping[str, Any]) -> "SearchSpace":
        """A copy with base keys overridden (`--set`); swept or variant keys are refused."""
        if not overrides:
            return self
        known = TrialConfig.keys()
        for key in overrides:
            if key not in known:
                raise SpaceError(f"--set {key}: unknown key; allowed keys: {', '.join(known)}")
            swept = [a.key for a in self.axes]
            if key in swept:
                raise SpaceError(f"--set {key}: {key!r} is swept by {self.source} (axes: {', '.join(swept)}); "
                                 "--set only overrides base keys")
            in_variants = [v.name for v in self.variants if key in v.values]
            if in_variants:
                raise SpaceError(f"--set {key}: {key!r} is set by the variant(s) {', '.join(in_variants)} of "
                                 f"{self.source}; --set only overrides base keys")
        base = {**self.base, **overrides}
        out = dataclasses.replace(self, base=base, overrides={**self.overrides, **overrides})
        _validate_grid(out)
        return out

    def smoked(self) -> "SearchSpace":
        """A copy with steps and sample counts capped (`--smoke`): same trials, a quick look."""
        base = dict(self.base)
        for key, cap in SMOKE_CAPS.items():
            base[key] = min(base.get(key, _DEFAULTS[key]), cap)
        variants = tuple(Variant(v.name, {k: (min(x, SMOKE_CAPS[k]) if k in SMOKE_CAPS else x)
                                          for k, x in v.values.items()}) for v in self.variants)
        out = dataclasses.replace(self, base=base, variants=variants, smoke=True)
        _validate_grid(out)
        return out

    def with_num_samples(self, n: int) -> "SearchSpace":
        """A copy with another `num_samples`."""
        if n < 1:
            raise SpaceError(f"--num-samples {n}: must be >= 1")
        return dataclasses.replace(self, num_samples=n)

    # ---- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, written next to the results and read back by --resume."""
        return {
            "name": self.name, "description": self.description, "source": self.source,
            "base": _jsonable(self.base),
            "axes": {a.key: _jsonable(a.to_yaml()) for a in self.axes},
            "variants": [{"name": v.name, **_jsonable(v.values)} for v in self.variants],
            "search": self.search, "metric": self.metric, "mode": self.mode, "num_samples": self.num_samples,
            "seed": self.seed, "scheduler": _jsonable(self.scheduler), "cpu": self.cpu, "gpu": self.gpu,
            "max_concurrent": self.max_concurrent, "max_failures": self.max_failures,
            "overrides": _jsonable(self.overrides), "smoke": self.smoke,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
        """Inverse of `to_dict` (validated again)."""
        raw = {
            "name": d["name"], "description": d.get("description", ""), "base": d["base"], "axes": d["axes"],
            "variants": d["variants"], "search": d["search"], "metric": d["metric"], "mode": d["mode"],
            "num_samples": d["num_samples"], "seed": d["seed"],
            "scheduler": ({"asha": {k: v for k, v in d["scheduler"].items() if k != "name"}}
                          if d.get("scheduler") else None),
            "resources": {"cpu": d["cpu"], "gpu": d["gpu"]}, "max_concurrent": d["max_concurrent"],
            "max_failures": d["max_failures"],
        }
        space = parse_space(raw, d.get("source", "sweep.json"))
        return dataclasses.replace(space, overrides=dict(d.get("overrides", {})), smoke=bool(d.get("smoke", False)))


_DEFAULTS = defaults()


# ---- locating and loading --------------------------------------------------------------------

def spaces_dir() -> Path:
    """The shipped `search_spaces/` folder: $DRIFT_SWEEPS_SPACES, else next to the package (repo checkout)."""
    env = os.environ.get("DRIFT_SWEEPS_SPACES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "search_spaces", here / "search_spaces", Path.cwd() / "search_spaces"):
        if candidate.is_dir():
            return candidate
    return here.parent / "search_spaces"


def list_spaces() -> list[str]:
    """Names of the shipped search spaces."""
    folder = spaces_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_space(name_or_path: str) -> Path:
    """A space file from a shipped name (`quickstart`) or a path (`my/space.yaml`)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or os.sep in name_or_path or "/" in name_or_path:
        if p.is_file():
            return p
        raise SpaceError(f"search space file {name_or_path} not found")
    for suffix in (".yaml", ".yml"):
        candidate = spaces_dir() / f"{name_or_path}{suffix}"
        if candidate.is_file():
            return candidate
    if p.is_file():
        return p
    raise SpaceError(f"unknown search space {name_or_path!r}; shipped spaces (in {spaces_dir()}): "
                     f"{', '.join(list_spaces()) or 'none'}; or pass a path to a .yaml file")


def load_space(name_or_path: str) -> SearchSpace:
    """Read and validate one space file."""
    path = find_space(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpaceError(f"{path}: not valid YAML: {err}") from None
    shown = os.path.relpath(path)
    return parse_space(raw, str(path) if shown.startswith("..") else shown)


def parse_space(raw: Any, source: str) -> SearchSpace:
    """Validate a raw space mapping; every error names `source` and the key."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{source}: a search space is a mapping with keys {', '.join(_FILE_KEYS)}")
    unknown = sorted(set(raw) - set(_FILE_KEYS))
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(_FILE_KEYS)}")
    r = {k: copy.deepcopy(raw.get(k, default)) for k, default in _FILE_KEYS.items()}
    name = r["name"]
    if not isinstance(name, str) or not name or any(c in name for c in "/\\?# ") or name.startswith("."):
        raise SpaceError(f"{source}: 'name' must be a non-empty string usable as a folder name, got {name!r}")
    if r["search"] not in SEARCHES:
        raise SpaceError(f"{source}: search {r['search']!r} unknown; allowed: {', '.join(SEARCHES)}")
    if r["metric"] not in METRICS:
        raise SpaceError(f"{source}: metric {r['metric']!r} unknown; allowed: {', '.join(METRICS)}")
    if r["mode"] not in MODES:
        raise SpaceError(f"{source}: mode {r['mode']!r} unknown; allowed: {', '.join(MODES)}")
    for key, low in (("num_samples", 1), ("seed", 0), ("max_failures", 0)):
        if not _is_int(r[key]) or r[key] < low:
            raise SpaceError(f"{source}: {key!r} must be an integer >= {low}, got {r[key]!r}")
    if r["max_concurrent"] is not None and (not _is_int(r["max_concurrent"]) or r["max_concurrent"] < 1):
        raise SpaceError(f"{source}: 'max_concurrent' must be null or an integer >= 1, got {r['max_concurrent']!r}")
    cpu, gpu = _parse_resources(r["resources"], source)
    scheduler = _parse_scheduler(r["scheduler"], source)

    base = r["base"] or {}
    if not isinstance(base, Mapping):
        raise SpaceError(f"{source}: 'base' must be a mapping of config keys, got {type(base).__name__}")
    _check_base_types(base, f"{source}: base")
    axes = _parse_axes(r["axes"] or {}, source)
    variants = _parse_variants(r["variants"] or [], source)

    overlap = {a.key for a in axes} & {k for v in variants for k in v.values}
    if overlap:
        raise SpaceError(f"{source}: key(s) {', '.join(sorted(overlap))} are both an axis and set by a variant; "
                         "put each key in one place")
    if r["search"] == "grid":
        dist = [a.key for a in axes if a.kind != "grid"]
        if dist:
            raise SpaceError(f"{source}: axes {', '.join(dist)} are distributions, which search: grid cannot "
                             "enumerate; use lists, or search: random / optuna")
    if r["search"] == "optuna":
        lists = [a.key for a in axes if a.kind == "grid"]
        if lists:
            raise SpaceError(f"{source}: axes {', '.join(lists)} are grid lists, which search: optuna does not "
                             "take; write them as {choice: [...]} (or fix them in base)")
        if len(variants) > 1:
            raise SpaceError(f"{source}: search: optuna takes at most one variant (got {len(variants)}); "
                             "use a {choice: [...]} axis instead")
        if not axes:
            raise SpaceError(f"{source}: search: optuna needs at least one distribution axis")

    space = SearchSpace(
        name=name, description=str(r["description"] or "").strip(), source=source, base=dict(base),
        axes=tuple(axes), variants=tuple(variants), search=r["search"], metric=r["metric"], mode=r["mode"],
        num_samples=r["num_samples"], seed=r["seed"], scheduler=scheduler, cpu=cpu, gpu=gpu,
        max_concurrent=r["max_concurrent"], max_failures=r["max_failures"],
    )
    _validate_grid(space)
    return space


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` strings (values parsed as YAML) -> {key: value}; keys checked against TrialConfig."""
    out: dict[str, Any] = {}
    known = TrialConfig.keys()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpaceError(f"--set {item!r}: expected key=value, e.g. --set k_max=8")
        if key not in known:
            raise SpaceError(f"--set {item!r}: unknown key {key!r}; allowed keys: {', '.join(known)}")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise SpaceError(f"--set {item!r}: value is not valid YAML: {err}") from None
    return out


# ---- pieces --------------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse_resources(res: Any, source: str) -> tuple[float, float]:
    if not isinstance(res, Mapping):
        raise SpaceError(f"{source}: 'resources' must be a mapping like {{cpu: 1, gpu: 0.5}}")
    unknown = sorted(set(res) - {"cpu", "gpu"})
    if unknown:
        raise SpaceError(f"{source}: resources: unknown key(s) {', '.join(unknown)}; allowed: cpu, gpu")
    cpu, gpu = res.get("cpu", 1), res.get("gpu", 0)
    if not _is_num(cpu) or cpu <= 0:
        raise SpaceError(f"{source}: resources.cpu must be a number > 0, got {cpu!r}")
    if not _is_num(gpu) or gpu < 0 or (gpu > 1 and gpu != int(gpu)):
        raise SpaceError(f"{source}: resources.gpu must be 0, a fraction in (0, 1] or a whole number, got {gpu!r}")
    return cpu, gpu


def _parse_scheduler(s: Any, source: str) -> Optional[dict[str, Any]]:
    if s is None:
        return None
    if isinstance(s, str):
        s = {s: {}}
    if not isinstance(s, Mapping) or len(s) != 1 or next(iter(s)) not in SCHEDULERS:
        raise SpaceError(f"{source}: scheduler must be null, one of {', '.join(SCHEDULERS)}, "
                         f"or {{asha: {{grace_period: 4, reduction_factor: 3}}}}; got {s!r}")
    name, opts = next(iter(s.items()))
    opts = opts or {}
    unknown = sorted(set(opts) - set(_ASHA_KEYS))
    if unknown:
        raise SpaceError(f"{source}: scheduler.{name}: unknown option(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(_ASHA_KEYS)}")
    out = {"name": name, **_ASHA_KEYS, **opts}
    if not _is_int(out["grace_period"]) or out["grace_period"] < 1:
        raise SpaceError(f"{source}: scheduler.{name}.grace_period must be an integer >= 1 (in reports)")
    if not _is_num(out["reduction_factor"]) or out["reduction_factor"] <= 1:
        raise SpaceError(f"{source}: scheduler.{name}.reduction_factor must be a number > 1")
    return out


def _check_base_types(base: Mapping[str, Any], where: str) -> None:
    """Unknown keys of a partial config (types and ranges are checked on whole trial configs)."""
    known = TrialConfig.keys()
    unknown = sorted(set(base) - set(known))
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(known)}")


def _parse_axes(axes: Any, source: str) -> list[Axis]:
    if not isinstance(axes, Mapping):
        raise SpaceError(f"{source}: 'axes' must be a mapping key -> list or distribution")
    known = {k: type_name(tp) for k, tp in field_types().items()}
    out = []
    for key, spec in axes.items():
        where = f"{source}: axes.{key}"
        if key not in known:
            raise SpaceError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(known)}")
        if key == VARIANT_PARAM:
            raise SpaceError(f"{where}: {VARIANT_PARAM!r} is reserved")
        ftype = known[key]
        if isinstance(spec, list):
            if not spec:
                raise SpaceError(f"{where}: an empty list sweeps nothing")
            if len({repr(v) for v in spec}) != len(spec):
                raise SpaceError(f"{where}: repeated values in {spec!r}")
            out.append(Axis(key, "grid", tuple(_plain(v) for v in spec)))
            continue
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise SpaceError(f"{where}: expected a list (grid axis) or one of "
                             f"{', '.join('{' + d + ': ...}' for d in DISTRIBUTIONS)}; got {spec!r}")
        kind, args = next(iter(spec.items()))
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise SpaceError(f"{where}: choice takes a non-empty list of values, got {args!r}")
            out.append(Axis(key, kind, tuple(_plain(v) for v in args)))
            continue
        if not isinstance(args, list) or len(args) != 2 or not all(_is_num(a) for a in args):
            raise SpaceError(f"{where}: {kind} takes [low, high], got {args!r}")
        low, high = args
        if kind in ("loguniform", "uniform") and ftype != "float":
            raise SpaceError(f"{where}: {kind} needs a float key, but {key!r} is {ftype}"
                             + ("; use randint" if ftype == "int" else "; use choice"))
        if kind == "randint" and ftype != "int":
            raise SpaceError(f"{where}: randint needs an int key, but {key!r} is {ftype}; use uniform or loguniform")
        if kind == "randint" and not (_is_int(low) and _is_int(high)):
            raise SpaceError(f"{where}: randint bounds must be integers, got {args!r}")
        if not low < high:
            raise SpaceError(f"{where}: {kind} needs low < high, got {args!r}")
        if kind == "loguniform" and low <= 0:
            raise SpaceError(f"{where}: loguniform needs 0 < low < high, got {args!r}")
        out.append(Axis(key, kind, (low, high)))
    return out


def _parse_variants(variants: Any, source: str) -> list[Variant]:
    if not isinstance(variants, list):
        raise SpaceError(f"{source}: 'variants' must be a list of mappings, each with a 'name'")
    out, seen = [], set()
    known = TrialConfig.keys()
    for i, v in enumerate(variants):
        where = f"{source}: variants[{i}]"
        if not isinstance(v, Mapping) or not isinstance(v.get("name"), str) or not v["name"]:
            raise SpaceError(f"{where}: each variant is a mapping with a string 'name' and config keys, got {v!r}")
        name = v["name"]
        if name in seen:
            raise SpaceError(f"{where}: duplicate variant name {name!r}")
        seen.add(name)
        values = {k: _plain(x) for k, x in v.items() if k != "name"}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SpaceError(f"{where} ({name}): unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"allowed keys: {', '.join(known)}")
        out.append(Variant(name, values))
    return out


def _validate_grid(space: SearchSpace) -> None:
    """Build a TrialConfig for every axis value and variant, then for every grid point."""
    first = {a.key: a.corners()[0] for a in space.axes}
    names = [v.name for v in space.variants] or [None]
    for name in names:  # base and variants alone, then one axis at a time: errors name the culprit
        _try(space, {**first, **({VARIANT_PARAM: name} if name else {})})
    for a in space.axes:
        for value in a.corners():
            for name in names:
                _try(space, {**first, a.key: value, **({VARIANT_PARAM: name} if name else {})})
    count = math.prod(len(a.corners()) for a in space.axes) * len(names)
    if count <= _MAX_VALIDATED:
        for params in space.grid_points():
            _try(space, params)


def _try(space: SearchSpace, params: Mapping[str, Any]) -> None:
    """Resolve one trial; on failure say which part of the file holds the offending key."""
    try:
        space.resolve(params, where="")
    except ConfigError as err:
        msg = str(err).removeprefix(": ")
        key = err.key
        axes = {a.key: a for a in space.axes}
        variant = next((v for v in space.variants if v.name == params.get(VARIANT_PARAM)), None)
        if key in axes:
            part = f"axes.{key} = {params[key]!r}"
        elif variant is not None and key in variant.values:
            part = f"variants[{variant.name!r}].{key}"
        elif key in space.overrides:
            part = f"--set {key}"
        elif key in space.base:
            part = f"base.{key}"
        elif variant is not None:
            part = f"variants[{variant.name!r}] (with {key!r} left at its default)" if key else f"variants[{variant.name!r}]"
        else:
            part = "trial config"
        raise SpaceError(f"{space.source}: {part}: {msg} (trial: {_describe(params)})") from None


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "(base)"


def _plain(v: Any) -> Any:
    """Tuples -> lists and numpy scalars -> Python ones, so values compare and serialise like YAML's."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if type(v).__module__ == "numpy" and hasattr(v, "item"):
        return v.item()
    return v


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v
