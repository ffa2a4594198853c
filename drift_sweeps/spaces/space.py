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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import yaml

from .spine import record
from .spine.config import ConfigError, TrialConfig, defaults, field_types, type_name

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
        if not 1 <= n <= MAX_TRIALS:
            raise SpaceError(f"--num-samples {_short(n, 40)}: must be in [1, {MAX_TRIALS}]")
        out = dataclasses.replace(self, num_samples=n)
        if out.trial_count() > MAX_TRIALS:
            raise SpaceError(f"--num-samples {n}: {out.trial_count()} trials; allowed: at most {MAX_TRIALS} per sweep")
        return out

    # ---- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, written next to the results and read back by --resume."""
        return {
            "name": self.name, "description": self.description, "source": self.source,
            "base": jsonable(self.base),
            "axes": {a.key: jsonable(a.to_yaml()) for a in self.axes},
            "variants": [{"name": v.name, **jsonable(v.values)} for v in self.variants],
            "search": self.search, "metric": self.metric, "mode": self.mode, "num_samples": self.num_samples,
            "seed": self.seed, "scheduler": jsonable(self.scheduler), "cpu": self.cpu, "gpu": self.gpu,
            "max_concurrent": self.max_concurrent, "max_failures": self.max_failures,
            "overrides": jsonable(self.overrides), "smoke": self.smoke,
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
    shown = os.path.relpath(path)
    source = str(path) if shown.startswith("..") else shown
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpaceError(f"{source}: {path.stat().st_size} bytes; a search space file may have at most "
                             f"{MAX_FILE_BYTES} bytes (1 MiB)")
        data = path.read_bytes()
    except OSError as err:
        raise SpaceError(f"{source}: cannot read it: {err.strerror or err}") from None
    return parse_space(load_yaml(data, source, MAX_FILE_BYTES), source)


# ---- bounded YAML ----------------------------------------------------------------------------

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when available (20x faster)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """yaml.SafeLoader whose mappings must have string keys, each once (no merge keys)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            where = f"line {key_node.start_mark.line + 1}"
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpaceError(f"{where}: merge keys ('<<') are not supported; write the keys out")
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == "tag:yaml.org,2002:str"):
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"a {key_node.id}"
                raise SpaceError(f"{where}: key {_short(shown)} is not a string; every key is a name like 'k_max'")
            if key_node.value in seen:
                raise SpaceError(f"{where}: duplicate key {_short(key_node.value)} (YAML would silently keep the "
                                 "last value); give each key once")
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line from a PyYAML error: where, then what."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def load_yaml(data: bytes | str, source: str, max_bytes: int) -> Any:
    """Parse YAML text with bounds: size, UTF-8 text, nesting depth, alias expansion, string keys once."""
    if isinstance(data, str):
        text = data
        if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise SpaceError(f"{source}: more than {max_bytes} bytes of YAML; allowed: at most {max_bytes}")
    else:
        if len(data) > max_bytes:
            raise SpaceError(f"{source}: {len(data)} bytes; allowed: at most {max_bytes}")
        if b"\x00" in data:
            raise SpaceError(f"{source}: a binary file (it holds NUL bytes), not YAML text")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpaceError(f"{source}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                             "save it as UTF-8") from None
    text = text.removeprefix("\ufeff")
    try:
        depth, events = 0, 0
        for event in yaml.parse(text, Loader=_BaseLoader):  # event stream: no recursion, bounded depth
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise SpaceError(f"{source}: line {event.start_mark.line + 1}: lists/mappings nested deeper "
                                     f"than {MAX_YAML_DEPTH} levels; a search space needs a few")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
            events += 1
            if events > 4 * MAX_YAML_NODES:
                raise SpaceError(f"{source}: more than {MAX_YAML_NODES} values; allowed: at most {MAX_YAML_NODES}")
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_size(node, {}, set(), source)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise SpaceError(f"{source}: not valid YAML: {_yaml_problem(err)}") from None
    except SpaceError as err:
        raise SpaceError(str(err) if str(err).startswith(source) else f"{source}: {err}") from None
    except RecursionError:
        raise SpaceError(f"{source}: nested too deeply; allowed: {MAX_YAML_DEPTH} levels") from None


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int], source: str) -> int:
    """Values a node stands for once every alias is expanded (memoised: a 300-byte bomb costs ~30 steps)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise SpaceError(f"{source}: line {node.start_mark.line + 1}: an alias refers to itself (a recursive "
                         "structure)")
    active.add(key)
    if isinstance(node, yaml.SequenceNode):
        n = 1 + sum(_expanded_size(c, memo, active, source) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        n = 1 + sum(_expanded_size(k, memo, active, source) + _expanded_size(v, memo, active, source)
                    for k, v in node.value)
    else:
        n = 1
    active.discard(key)
    if n > MAX_YAML_NODES:
        raise SpaceError(f"{source}: line {node.start_mark.line + 1}: the aliases (*anchor) here expand to more "
                         f"than {MAX_YAML_NODES} values; allowed: at most {MAX_YAML_NODES}")
    memo[key] = n
    return n


def parse_space(raw: Any, source: str) -> SearchSpace:
    """Validate a raw space mapping; every error names `source` and the key."""
    if not isinstance(raw, Mapping):
        raise SpaceError(f"{source}: a search space is a mapping with keys {', '.join(_FILE_KEYS)}")
    unknown = sorted(set(raw) - set(_FILE_KEYS))
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(_FILE_KEYS)}")
    r = {k: copy.deepcopy(raw.get(k, default)) for k, default in _FILE_KEYS.items()}
    check_name(r["name"], f"{source}: 'name'")
    name = r["name"]
    desc = r["description"]
    if desc is not None and not isinstance(desc, str):
        raise SpaceError(f"{source}: 'description' must be text, got {type(desc).__name__} {_short(desc)}")
    if desc and len(desc) > MAX_DESCRIPTION_LEN:
        raise SpaceError(f"{source}: 'description' is {len(desc)} characters long; allowed: at most "
                         f"{MAX_DESCRIPTION_LEN}")
    for key in ("search", "metric", "mode"):
        if not isinstance(r[key], str):
            raise SpaceError(f"{source}: {key!r} must be a name, got {_short(r[key])}")
    if r["search"] not in SEARCHES:
        raise SpaceError(f"{source}: search {r['search']!r} unknown; allowed: {', '.join(SEARCHES)}")
    if r["metric"] not in METRICS:
        raise SpaceError(f"{source}: metric {r['metric']!r} unknown; allowed: {', '.join(METRICS)}")
    if r["mode"] not in MODES:
        raise SpaceError(f"{source}: mode {r['mode']!r} unknown; allowed: {', '.join(MODES)}")
    for key, low, high in (("num_samples", 1, MAX_TRIALS), ("seed", 0, MAX_SEARCH_SEED),
                           ("max_failures", 0, MAX_FAILURES)):
        if not _is_int(r[key]) or not low <= r[key] <= high:
            raise SpaceError(f"{source}: {key!r} must be an integer in [{low}, {high}], got {_short(r[key], 40)}")
    if r["max_concurrent"] is not None and (not _is_int(r["max_concurrent"]) or not 1 <= r["max_concurrent"] <= MAX_TRIALS):
        raise SpaceError(f"{source}: 'max_concurrent' must be null or an integer in [1, {MAX_TRIALS}], "
                         f"got {_short(r['max_concurrent'], 40)}")
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
        name=name, description=(desc or "").strip(), source=source, base=dict(base),
        axes=tuple(axes), variants=tuple(variants), search=r["search"], metric=r["metric"], mode=r["mode"],
        num_samples=r["num_samples"], seed=r["seed"], scheduler=scheduler, cpu=cpu, gpu=gpu,
        max_concurrent=r["max_concurrent"], max_failures=r["max_failures"],
    )
    check_trial_count(space)
    _check_shadowed_base(space)
    _validate_grid(space)
    return space


def check_name(name: Any, what: str, limit: int = MAX_NAME_LEN) -> None:
    """A sweep name: a folder name of at most `limit` characters from [A-Za-z0-9_.+=@-], not starting with '.'/'-'."""
    if not isinstance(name, str) or not name:
        raise SpaceError(f"{what} must be a non-empty name, got {_short(name)}")
    if len(name) > limit:
        raise SpaceError(f"{what} is {len(name)} characters long; allowed: at most {limit}")
    if not _NAME_RE.fullmatch(name):
        raise SpaceError(f"{what} {_short(name)} is not usable as a folder name; allowed: letters, digits and "
                         "_ . + = @ - (not first: . -)")


def check_trial_count(space: "SearchSpace") -> None:
    """At most MAX_TRIALS trials (checked before any grid point is built)."""
    n = space.trial_count()
    if n > MAX_TRIALS:
        raise SpaceError(f"{space.source}: {n} trials; allowed: at most {MAX_TRIALS} per sweep (split it into "
                         "several sweeps)")


def _check_shadowed_base(space: "SearchSpace") -> None:
    """A base key that an axis (or every variant) overrides is still checked: a typo there is a typo."""
    shadowed = {a.key for a in space.axes} | {k for v in space.variants for k in v.values}
    if not shadowed & set(space.base):
        return
    first = {a.key: a.corners()[0] for a in space.axes}
    if space.variants:
        first[VARIANT_PARAM] = space.variants[0].name
    try:
        trial = space.resolve(first, where="").to_dict()
    except ConfigError:
        return  # reported with its proper location by _validate_grid
    for key in sorted(shadowed & set(space.base)):
        try:
            TrialConfig.from_dict({**trial, key: space.base[key]}, where="")
        except ConfigError as err:
            if err.key != key:
                continue  # valid alone, only inconsistent with another key's value: not a typo
            where = "--set" if key in space.overrides else f"base.{key}"
            raise SpaceError(f"{space.source}: {where}: {str(err).removeprefix(': ')} (every trial overrides it, "
                             "but it must still be valid: fix it or remove it from base)") from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` strings (values parsed as YAML) -> {key: value}; keys checked against TrialConfig."""
    out: dict[str, Any] = {}
    known = TrialConfig.keys()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpaceError(f"--set {_short(item)}: expected key=value, e.g. --set k_max=8")
        if key not in known:
            raise SpaceError(f"--set {_short(item)}: unknown key {_short(key)}; allowed keys: {', '.join(known)}")
        out[key] = load_yaml(text, f"--set {key}", MAX_SET_BYTES) if text.strip() else None
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


def jsonable(v: Any) -> Any:
    """Mappings, lists and numpy scalars as plain JSON values (string keys), e.g. Tune parameters."""
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    return _plain(v) if not isinstance(v, (tuple, list)) else [jsonable(x) for x in v]
