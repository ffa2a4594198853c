"""Search spaces as data: a validated `SearchSpace` (what a sweep varies, how it searches) and
`parse_space`, which checks a raw space mapping completely (every key, every axis value, every grid point).

Ray-free on purpose: a space is checked before any cluster work starts.  The Tune adapter turns a
validated `SearchSpace` into a `param_space`; `SearchSpace.resolve` turns the parameters Tune chose back
into a `TrialConfig`.  The parts (axes, variants, limits) are parsed in `parts.py`, the YAML in `yaml_io.py`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

from ..spine.config import ConfigError, TrialConfig, defaults
from .parts import (MAX_PACK, MAX_TRIALS, REPLICATE_KEYS, SMOKE_CAPS, VARIANT_PARAM, Axis, SpaceError, Variant, _check_base_types,
                    _describe, _parse_axes, _parse_resources, _parse_scheduler, _parse_variants, _plain, _short,
                    check_pack, check_search_fits, check_top_level, jsonable)

_MAX_VALIDATED = 50_000  # grid points checked one by one; beyond this only axes and variants are


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
    pack: int = 1  # configurations per Ray trial (parts._FILE_KEYS)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set values applied to base
    smoke: bool = False

    @property
    def threads(self) -> int:
        """torch threads of one trial: the CPUs reserved for it, under Ray and --serial alike (a trial's
        plans and float sums depend on the thread count, so both runners give it the same one)."""
        return max(1, int(self.cpu))

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

    def with_pack(self, pack: int) -> "SearchSpace":
        """A copy with another `pack` (`--pack P`)."""
        if not isinstance(pack, int) or not 1 <= pack <= MAX_PACK:
            raise SpaceError(f"--pack {_short(pack, 40)}: must be an integer in [1, {MAX_PACK}]")
        check_pack(pack, self.search, self.scheduler, f"--pack {pack} with {self.source}")
        return dataclasses.replace(self, pack=pack)

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
            "max_concurrent": self.max_concurrent, "max_failures": self.max_failures, "pack": self.pack,
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
            "max_failures": d["max_failures"], "pack": d.get("pack", 1),
        }
        space = parse_space(raw, d.get("source", "sweep.json"))
        return dataclasses.replace(space, overrides=dict(d.get("overrides", {})), smoke=bool(d.get("smoke", False)))


_DEFAULTS = defaults()


def parse_space(raw: Any, source: str) -> SearchSpace:
    """Validate a raw space mapping; every error names `source` and the key."""
    r = check_top_level(raw, source)
    cpu, gpu = _parse_resources(r["resources"], source)
    scheduler = _parse_scheduler(r["scheduler"], source)
    base = r["base"] or {}
    if not isinstance(base, Mapping):
        raise SpaceError(f"{source}: 'base' must be a mapping of config keys, got {type(base).__name__}")
    _check_base_types(base, f"{source}: base")
    axes = _parse_axes(r["axes"] or {}, source)
    variants = _parse_variants(r["variants"] or [], source)
    check_search_fits(r["search"], axes, variants, source)
    space = SearchSpace(
        name=r["name"], description=(r["description"] or "").strip(), source=source, base=dict(base),
        axes=tuple(axes), variants=tuple(variants), search=r["search"], metric=r["metric"], mode=r["mode"],
        num_samples=r["num_samples"], seed=r["seed"], scheduler=scheduler, cpu=cpu, gpu=gpu,
        max_concurrent=r["max_concurrent"], max_failures=r["max_failures"], pack=r["pack"],
    )
    check_pack(space.pack, space.search, space.scheduler, source)
    check_trial_count(space)
    _check_shadowed_base(space)
    _validate_grid(space)
    return space


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
