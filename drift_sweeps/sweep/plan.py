"""A sweep's plan: the validated space, its name and folder (`plan`, no Ray, no lock), then what the folder
says about it under the driver's lock (`settle`: a new sweep, a resume, or a finished one)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from typing import Any, Optional

from .. import results
from ..spaces import SearchSpace, SpaceError, check_name, load_space, parse_overrides
from .checks import check_target_files
from .folder import SPEC_FILE, SweepFolder
from .memory_check import check_trial_memory

DEFAULT_SPACE = "quickstart"
DEFAULT_RESULTS = "results/"


@dataclasses.dataclass
class Plan:
    """A validated sweep, ready to run."""

    space: SearchSpace
    name: str
    folder: SweepFolder
    max_concurrent: Optional[int]
    mode: str = "new"  # new: start the sweep; resume: run its unfinished trials; done: every trial is finished
    finished: int = 0  # trials with a row already (resume / done)

    @property
    def sweep_root(self) -> str:
        """The sweep folder's URI."""
        return self.folder.root


def plan(args: argparse.Namespace) -> Plan:
    """Validate everything that can be validated without Ray (and without the folder's lock)."""
    if args.resume:
        for flag, given in (("--set", args.overrides), ("--num-samples", args.num_samples),
                            ("--pack", getattr(args, "pack", None))):
            if given:
                raise SpaceError(f"{flag} cannot be combined with --resume: a resumed sweep keeps the spec it "
                                 f"recorded in {SPEC_FILE}")
        name = args.name or (load_space(args.space or DEFAULT_SPACE).name + ("-smoke" if args.smoke else ""))
        folder = SweepFolder.under(args.results, name)
        record = folder.read_spec()
        if record is None:
            raise SpaceError(f"--resume: no sweep to resume at {folder.root} (no {SPEC_FILE}); run it without --resume")
        space = folder.recorded_space(record)
    else:
        space = load_space(args.space or DEFAULT_SPACE).with_overrides(parse_overrides(args.overrides))
        if args.smoke:
            space = space.smoked()
        if args.num_samples is not None:
            space = space.with_num_samples(args.num_samples)
        if getattr(args, "pack", None) is not None:
            space = space.with_pack(args.pack)
        name = args.name or (space.name + ("-smoke" if args.smoke else ""))
        check_name(name, "sweep name", limit=120)
        folder = SweepFolder.under(args.results, name)
    if args.serial and space.search != "grid":
        raise SpaceError(f"--serial runs grid sweeps; {space.source} searches with {space.search!r} "
                         "(run it without --serial)")
    check_target_files(space)
    check_trial_memory(space, args)
    return Plan(space, name, folder, args.max_concurrent or space.max_concurrent)


def _comparable(space: SearchSpace) -> dict[str, Any]:
    d = space.to_dict()
    d.pop("source", None)
    return json.loads(json.dumps(d, sort_keys=True))


def settle(p: Plan, args: argparse.Namespace) -> Plan:
    """The plan against what its folder holds (under the folder's lock): the same sweep again continues it,
    or reports it when finished; a different sweep there is refused."""
    folder = p.folder
    if args.resume:
        return continuation(p)
    if args.overwrite or not folder.exists() or folder.only_temporaries():
        return p
    record = folder.read_spec()
    if record is None:
        raise SpaceError(f"{folder.root} already holds files but no {SPEC_FILE} ({folder.row_files()} trial(s) "
                         "written): pass --overwrite to replace it, or --name to write a new one")
    old, new = _comparable(folder.recorded_space(record)), _comparable(p.space)
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise SpaceError(f"{folder.root} holds a different sweep (its {SPEC_FILE} differs in: {', '.join(diff)}): "
                         "pass --name to write a new one, --overwrite to replace it, or --resume to continue the "
                         "recorded one")
    return continuation(p)


def continuation(p: Plan) -> Plan:
    """A plan for an existing sweep folder: `done` when every trial has its row, else `resume`."""
    finished = p.folder.finished_count()
    mode = "done" if finished >= p.space.trial_count() else "resume"
    return dataclasses.replace(p, mode=mode, finished=finished)


def spec_record(p: Plan, gpu: float, commit: Optional[str], versions: str) -> dict[str, Any]:
    """sweep.json: the resolved spec, written next to the results before any trial starts."""
    space = p.space
    return {
        "schema_version": results.SCHEMA_VERSION, "sweep": p.name, "space": space.to_dict(),
        "trial_count": space.trial_count(), "resources_per_trial": {"cpu": space.cpu, "gpu": gpu},
        "results": p.sweep_root, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit, "versions": json.loads(versions), "command": sys.argv,
        "trial_configs": space.trial_configs(),
    }


def describe(p: Plan) -> str:
    """What a sweep will run: the --dry-run report."""
    s = p.space
    factors = [f"{a.key}({len(a.values)})" for a in s.axes if a.kind == "grid"]
    if len(s.variants) > 1:
        factors.append(f"variants({len(s.variants)}: {', '.join(v.name for v in s.variants)})")
    if s.search != "optuna":
        formula = " x ".join(factors + ([f"num_samples {s.num_samples}"] if s.num_samples > 1 else [])) or "1"
    else:
        formula = f"num_samples {s.num_samples}"
    dists = [f"{a.key} ~ {a.kind}{list(a.values)}" for a in s.axes if a.kind != "grid"]
    lines = [
        f"{s.name} ({s.source}){': ' + s.description if s.description else ''}",
        f"{s.trial_count()} trials ({s.search} search: {formula})",
    ]
    if dists:
        lines.append("sampled: " + "; ".join(dists))
    lines += [
        f"resources per trial: {s.cpu:g} CPU, {s.gpu:g} GPU when the cluster has GPUs (override: --gpus-per-trial)",
        f"metric: {s.metric} ({s.mode}); scheduler: {s.scheduler['name'] if s.scheduler else 'none'}; "
        f"retries per trial: {s.max_failures}; max concurrent: {p.max_concurrent or 'as resources allow'}"
        + (f"; up to {s.pack} configurations per Ray trial (pack)" if s.pack > 1 else ""),
        f"base config: {json.dumps(dict(s.base), sort_keys=True)}" + (" (--smoke)" if s.smoke else ""),
        f"results: {p.sweep_root}/{{{','.join(results.TABLES)}}}/",
    ]
    return "\n".join(lines)
