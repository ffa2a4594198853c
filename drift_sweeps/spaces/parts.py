"""The parts of a search space: limits, names, axes, variants, resources and scheduler, each parsed and
checked on its own (standard library, yaml-free); `space.parse_space` assembles them into a SearchSpace."""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ..spine import record
from ..spine.config import TrialConfig, field_types, type_name

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

# Bounds of the input itself, checked before anything is built from it.
MAX_FILE_BYTES = 2**20  # a space file (the largest shipped one is ~2 KiB)
MAX_SET_BYTES = 64 * 2**10  # one --set value
MAX_YAML_DEPTH = 20  # nesting of lists / mappings (a space needs ~5)
MAX_YAML_NODES = 100_000  # values after alias expansion (the billion-laughs guard)
MAX_TRIALS = 100_000  # trials per sweep (sweep.json records every grid trial's config)
MAX_AXIS_VALUES = 10_000  # values of one grid axis or choice
MAX_NAME_LEN = 100  # sweep and variant names (folder and column values)
MAX_DESCRIPTION_LEN = 10_000
MAX_SEARCH_SEED = 2**32 - 1  # the searchers' random state (numpy) takes 32-bit seeds
MAX_FAILURES = 1000
MAX_PACK = 4096  # configurations in one packed trial
MAX_CPU_PER_TRIAL, MAX_GPU_PER_TRIAL = 1024, 64
MAX_GRACE_PERIOD, MAX_REDUCTION_FACTOR = 10**6, 100
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@-]*")

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
    "pack": 1,  # configurations per Ray trial, trained in lockstep as one batched computation (grid only)
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


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


def check_name(name: Any, what: str, limit: int = MAX_NAME_LEN) -> None:
    """A sweep name: a folder name of at most `limit` characters from [A-Za-z0-9_.+=@-], not starting with '.'/'-'."""
    if not isinstance(name, str) or not name:
        raise SpaceError(f"{what} must be a non-empty name, got {_short(name)}")
    if len(name) > limit:
        raise SpaceError(f"{what} is {len(name)} characters long; allowed: at most {limit}")
    if not _NAME_RE.fullmatch(name):
        raise SpaceError(f"{what} {_short(name)} is not usable as a folder name; allowed: letters, digits and "
                         "_ . + = @ - (not first: . -)")


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
    if not _is_num(cpu) or not 0 < cpu <= MAX_CPU_PER_TRIAL:
        raise SpaceError(f"{source}: resources.cpu must be a number in (0, {MAX_CPU_PER_TRIAL}], got {_short(cpu)}")
    check_gpus(gpu, f"{source}: resources.gpu")
    return cpu, gpu


def check_gpus(gpu: Any, what: str) -> None:
    """GPUs per trial: 0, a fraction in (0, 1] or a whole number up to MAX_GPU_PER_TRIAL."""
    if (not _is_num(gpu) or not 0 <= gpu <= MAX_GPU_PER_TRIAL or (gpu > 1 and gpu != int(gpu))):
        raise SpaceError(f"{what} must be 0, a fraction in (0, 1] or a whole number up to {MAX_GPU_PER_TRIAL}, "
                         f"got {_short(gpu)}")


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
    if not isinstance(opts, Mapping):
        raise SpaceError(f"{source}: scheduler.{name} must be a mapping of options "
                         f"({', '.join(_ASHA_KEYS)}), got {_short(opts)}")
    unknown = sorted(set(opts) - set(_ASHA_KEYS))
    if unknown:
        raise SpaceError(f"{source}: scheduler.{name}: unknown option(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(_ASHA_KEYS)}")
    out = {"name": name, **_ASHA_KEYS, **opts}
    if not _is_int(out["grace_period"]) or not 1 <= out["grace_period"] <= MAX_GRACE_PERIOD:
        raise SpaceError(f"{source}: scheduler.{name}.grace_period must be an integer in [1, {MAX_GRACE_PERIOD}] "
                         f"(in reports), got {_short(out['grace_period'])}")
    rf = out["reduction_factor"]
    if not _is_num(rf) or not math.isfinite(rf) or not 1 < rf <= MAX_REDUCTION_FACTOR:
        raise SpaceError(f"{source}: scheduler.{name}.reduction_factor must be a number in (1, "
                         f"{MAX_REDUCTION_FACTOR}], got {_short(rf)}")
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
            if len(spec) > MAX_AXIS_VALUES:
                raise SpaceError(f"{where}: {len(spec)} values; allowed: at most {MAX_AXIS_VALUES} per axis")
            if len({repr(v) for v in spec}) != len(spec):
                raise SpaceError(f"{where}: repeated values in {_short(spec)}")
            out.append(Axis(key, "grid", tuple(_plain(v) for v in spec)))
            continue
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise SpaceError(f"{where}: expected a list (grid axis) or one of "
                             f"{', '.join('{' + d + ': ...}' for d in DISTRIBUTIONS)}; got {_short(spec)}")
        kind, args = next(iter(spec.items()))
        if kind == "choice":
            if not isinstance(args, list) or not args or len(args) > MAX_AXIS_VALUES:
                raise SpaceError(f"{where}: choice takes a non-empty list of at most {MAX_AXIS_VALUES} values, "
                                 f"got {_short(args)}")
            out.append(Axis(key, kind, tuple(_plain(v) for v in args)))
            continue
        if not isinstance(args, list) or len(args) != 2 or not all(_is_num(a) for a in args):
            raise SpaceError(f"{where}: {kind} takes [low, high], got {_short(args)}")
        if not all(math.isfinite(a) for a in args):
            raise SpaceError(f"{where}: {kind} needs finite bounds, got {_short(args)}")
        low, high = args
        if kind in ("loguniform", "uniform") and ftype != "float":
            raise SpaceError(f"{where}: {kind} needs a float key, but {key!r} is {ftype}"
                             + ("; use randint" if ftype == "int" else "; use choice"))
        if kind == "randint" and ftype != "int":
            raise SpaceError(f"{where}: randint needs an int key, but {key!r} is {ftype}; use uniform or loguniform")
        if kind == "randint" and not (_is_int(low) and _is_int(high)):
            raise SpaceError(f"{where}: randint bounds must be integers, got {_short(args)}")
        if not low < high:
            raise SpaceError(f"{where}: {kind} needs low < high, got {_short(args)}")
        if kind == "loguniform" and low <= 0:
            raise SpaceError(f"{where}: loguniform needs 0 < low < high, got {_short(args)}")
        out.append(Axis(key, kind, (low, high)))
    return out


def _parse_variants(variants: Any, source: str) -> list[Variant]:
    if not isinstance(variants, list):
        raise SpaceError(f"{source}: 'variants' must be a list of mappings, each with a 'name'")
    if len(variants) > MAX_AXIS_VALUES:
        raise SpaceError(f"{source}: {len(variants)} variants; allowed: at most {MAX_AXIS_VALUES}")
    out, seen = [], set()
    known = TrialConfig.keys()
    for i, v in enumerate(variants):
        where = f"{source}: variants[{i}]"
        if not isinstance(v, Mapping) or not isinstance(v.get("name"), str) or not v["name"]:
            raise SpaceError(f"{where}: each variant is a mapping with a string 'name' and config keys, got {_short(v)}")
        name = v["name"]
        if len(name) > MAX_NAME_LEN or not name.isprintable():
            raise SpaceError(f"{where}: variant 'name' must be printable and at most {MAX_NAME_LEN} characters, "
                             f"got {_short(name)}")
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


def _describe(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "(base)"


def _plain(v: Any) -> Any:
    """Tuples -> lists and numpy scalars -> Python ones, so values compare and serialise like YAML's."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if type(v).__module__ == "numpy" and hasattr(v, "item"):
        return v.item()
    return v


def jsonable(v: Any) -> Any:
    """Mappings, lists and numpy scalars as plain JSON values (string keys), e.g. Tune parameters."""
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    return _plain(v) if not isinstance(v, (tuple, list)) else [jsonable(x) for x in v]


def check_top_level(raw: Any, source: str) -> dict[str, Any]:
    """The top-level keys of a space mapping, defaults filled in; name, text and scalar keys checked."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{source}: a search space is a mapping with keys {', '.join(_FILE_KEYS)}")
    unknown = sorted(set(raw) - set(_FILE_KEYS))
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(_FILE_KEYS)}")
    r = {k: copy.deepcopy(raw.get(k, default)) for k, default in _FILE_KEYS.items()}
    check_name(r["name"], f"{source}: 'name'")
    desc = r["description"]
    if desc is not None and not isinstance(desc, str):
        raise SpaceError(f"{source}: 'description' must be text, got {type(desc).__name__} {_short(desc)}")
    if desc and len(desc) > MAX_DESCRIPTION_LEN:
        raise SpaceError(f"{source}: 'description' is {len(desc)} characters long; allowed: at most "
                         f"{MAX_DESCRIPTION_LEN}")
    for key, allowed in (("search", SEARCHES), ("metric", METRICS), ("mode", MODES)):
        if not isinstance(r[key], str):
            raise SpaceError(f"{source}: {key!r} must be a name, got {_short(r[key])}")
        if r[key] not in allowed:
            raise SpaceError(f"{source}: {key} {r[key]!r} unknown; allowed: {', '.join(allowed)}")
    for key, low, high in (("num_samples", 1, MAX_TRIALS), ("seed", 0, MAX_SEARCH_SEED),
                           ("max_failures", 0, MAX_FAILURES), ("pack", 1, MAX_PACK)):
        if not _is_int(r[key]) or not low <= r[key] <= high:
            raise SpaceError(f"{source}: {key!r} must be an integer in [{low}, {high}], got {_short(r[key], 40)}")
    if r["max_concurrent"] is not None and (not _is_int(r["max_concurrent"]) or not 1 <= r["max_concurrent"] <= MAX_TRIALS):
        raise SpaceError(f"{source}: 'max_concurrent' must be null or an integer in [1, {MAX_TRIALS}], "
                         f"got {_short(r['max_concurrent'], 40)}")
    return r


def check_pack(pack: int, search: str, scheduler: Optional[Mapping[str, Any]], source: str) -> None:
    """pack > 1 needs the grid (packs are built from the grid points still to run) and no scheduler (a
    scheduler stops Ray trials, and a packed trial holds several configurations)."""
    if pack > 1 and search != "grid":
        raise SpaceError(f"{source}: pack {pack} needs search: grid (packs are made of grid points), not {search!r}")
    if pack > 1 and scheduler:
        raise SpaceError(f"{source}: pack {pack} cannot be combined with a scheduler (it would stop a whole pack); "
                         "drop the scheduler or set pack: 1")


def check_search_fits(search: str, axes: list[Axis], variants: list[Variant], source: str) -> None:
    """Axes and variants that the search can take: grid lists for grid, distributions for optuna."""
    overlap = {a.key for a in axes} & {k for v in variants for k in v.values}
    if overlap:
        raise SpaceError(f"{source}: key(s) {', '.join(sorted(overlap))} are both an axis and set by a variant; "
                         "put each key in one place")
    if search == "grid":
        dist = [a.key for a in axes if a.kind != "grid"]
        if dist:
            raise SpaceError(f"{source}: axes {', '.join(dist)} are distributions, which search: grid cannot "
                             "enumerate; use lists, or search: random / optuna")
    if search == "optuna":
        lists = [a.key for a in axes if a.kind == "grid"]
        if lists:
            raise SpaceError(f"{source}: axes {', '.join(lists)} are grid lists, which search: optuna does not "
                             "take; write them as {choice: [...]} (or fix them in base)")
        if len(variants) > 1:
            raise SpaceError(f"{source}: search: optuna takes at most one variant (got {len(variants)}); "
                             "use a {choice: [...]} axis instead")
        if not axes:
            raise SpaceError(f"{source}: search: optuna needs at least one distribution axis")
