"""Malformed search spaces, overrides and flags, generated from TrialConfig's fields and the space format.

Every generated case is invalid; the CLI must answer each with exit status 2 and a one-line
`error: ...` message on stderr that names the problem, before Ray starts, within CASE_LIMIT_S.
New config keys are fuzzed automatically: the float, int and list keys are read from
`drift_sweeps.spine.config.field_types()`.

Used by tests/test_fuzz_inputs.py; also runnable against another checkout (e.g. an older commit
in a git worktree) to count how each class of input was handled there:

    python tests/fuzz_inputs.py --checkout /tmp/old-worktree [--n 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import importlib
import io
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

CASE_LIMIT_S = 10.0  # a case running longer than this is a hang

# the tiny base every generated space starts from (valid on its own)
BASE = {"target": "torus1d", "k_max": 2, "n_samples": 64, "n_data": 64, "n_eval": 64, "dt": 0.2, "steps": 10,
        "eval_every": 5}

NONFINITE = {".nan": "nan", ".inf": "inf", "-.inf": "-inf"}  # YAML spelling -> what a message may say
HUGE_INTS = [2**63, 2**64 + 7, 10**30, 10**100]


@dataclasses.dataclass
class Case:
    """One malformed input: extra argv, files to write (name -> bytes; '{dir}' in argv is their folder)."""

    cls: str  # the class of defect (counted separately)
    label: str  # what is wrong, for messages
    argv: list[str]
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    needles: tuple[str, ...] = ()  # the message must contain one of these (names the problem)


def _space_doc(**fields: Any) -> dict[str, Any]:
    doc = {"name": "fz", "search": "grid", "base": dict(BASE), "axes": {"seed": [0, 1]}}
    doc.update(fields)
    return doc


def _yaml_bytes(doc: Any) -> bytes:
    import yaml

    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


def _space_case(cls: str, label: str, doc: Any, needles: tuple[str, ...], extra: Optional[list[str]] = None,
                raw: Optional[bytes] = None) -> Case:
    return Case(cls, label, ["{dir}/space.yaml", *(extra or [])],
                {"space.yaml": raw if raw is not None else _yaml_bytes(doc)}, needles)


def _text_with(doc: dict[str, Any], placeholder: str, yaml_text: str) -> bytes:
    """YAML of `doc` with the string `placeholder` replaced by raw YAML text (e.g. `.nan`)."""
    return _yaml_bytes(doc).replace(f"'{placeholder}'".encode(), yaml_text.encode()).replace(
        placeholder.encode(), yaml_text.encode())


def generate(seed: int = 0) -> list[Case]:
    """Every class of malformed input; deterministic for a seed (the seed picks random filler values)."""
    from drift_sweeps.spine.config import TrialConfig, field_types

    rng = random.Random(seed)
    types = field_types()
    float_keys = [k for k, tp in types.items() if tp is float]
    list_keys = [k for k, tp in types.items() if tp == tuple[float, ...]]
    int_keys = [k for k, tp in types.items() if tp is int]
    str_keys = [k for k, tp in types.items() if tp is str]
    cases: list[Case] = []
    P = "@@VALUE@@"

    # 1. non-finite floats, in every place a config value can come from
    for key in float_keys + list_keys:
        for text, word in NONFINITE.items():
            value = f"[1.0, {text}]" if key in list_keys else text
            needles = (key,)
            cases.append(_space_case("nonfinite", f"base.{key}={text}", None, needles,
                                     raw=_text_with(_space_doc(base={**BASE, key: P}), P, value)))
            cases.append(Case("nonfinite", f"--set {key}={text}", ["{dir}/space.yaml", "--set", f"{key}={value}"],
                              {"space.yaml": _yaml_bytes(_space_doc())}, needles))
            axis = f"[1.0, {value}]" if key not in list_keys else f"[[1.0], {value}]"
            cases.append(_space_case("nonfinite", f"axes.{key}={text}", None, needles,
                                     raw=_text_with(_space_doc(axes={key: P}), P, axis)))
            cases.append(_space_case("nonfinite", f"variants.{key}={text}", None, needles,
                                     raw=_text_with(_space_doc(variants=[{"name": "a", key: P}]), P, value)))
        if key in float_keys:
            for dist in ("uniform", "loguniform"):
                text = rng.choice(list(NONFINITE))
                cases.append(_space_case("nonfinite", f"{dist} {key} {text}", None, (key,),
                                         raw=_text_with(_space_doc(search="random", axes={key: {dist: P}}), P,
                                                        f"[0.5, {text}]")))
    for res in ("cpu", "gpu"):
        for text in NONFINITE:
            cases.append(_space_case("nonfinite", f"resources.{res}={text}", None, (f"resources.{res}",),
                                     raw=_text_with(_space_doc(resources={res: P}), P, text)))
    for text in ("nan", "inf", "-inf", "1e400"):
        cases.append(Case("nonfinite", f"--gpus-per-trial {text}", ["{dir}/space.yaml", "--gpus-per-trial", text],
                          {"space.yaml": _yaml_bytes(_space_doc())}, ("--gpus-per-trial",)))
    for text in NONFINITE:
        cases.append(_space_case("nonfinite", f"reduction_factor={text}", None, ("reduction_factor",),
                                 raw=_text_with(_space_doc(scheduler={"asha": {"reduction_factor": P}}), P, text)))

    # 2. integers beyond what the code, Parquet (int64) or the machine can hold
    for key in int_keys:
        for value in rng.sample(HUGE_INTS, 2):
            cases.append(_space_case("int_bounds", f"base.{key}={value}", _space_doc(base={**BASE, key: value}),
                                     (key,)))
            cases.append(Case("int_bounds", f"--set {key}={value}", ["{dir}/space.yaml", "--set", f"{key}={value}"],
                              {"space.yaml": _yaml_bytes(_space_doc(axes={}))}, (key,)))
        cases.append(_space_case("int_bounds", f"axes.{key} huge", _space_doc(axes={key: [2, 2**63]}), (key,)))
    for key in ("num_samples", "seed", "max_failures", "max_concurrent"):
        for value in (2**63, 10**30):
            cases.append(_space_case("int_bounds", f"{key}={value}", _space_doc(**{key: value}), (key,)))
    for value in (10**9, 10**30):
        cases.append(Case("int_bounds", f"--num-samples {value}", ["{dir}/space.yaml", "--num-samples", str(value)],
                          {"space.yaml": _yaml_bytes(_space_doc())}, ("--num-samples", "trials")))
    cases.append(_space_case("int_bounds", "grace_period huge",
                             _space_doc(scheduler={"asha": {"grace_period": 10**30}}), ("grace_period",)))
    for n_axes, width in ((3, 1000), (2, 40000), (4, 200)):
        keys = ["seed", "target_seed", "k_max", "n_samples"][:n_axes]
        axes = {k: list(range(2 if k == "n_samples" else 1, width + (2 if k == "n_samples" else 1))) for k in keys}
        cases.append(_space_case("int_bounds", f"grid of {width}^{n_axes} trials",
                                 _space_doc(axes=axes, base={**BASE, "k_max": 1}), ("trials", "values")))
    cases.append(_space_case("int_bounds", "randint k_max huge", _space_doc(search="random", axes={
        "k_max": {"randint": [1, 10**12]}}), ("k_max",)))

    # 3. flags
    space = {"space.yaml": _yaml_bytes(_space_doc())}
    flag_cases = [
        (["--num-cpus", "-1"], ("--num-cpus",)), (["--num-cpus", "0"], ("--num-cpus",)),
        (["--num-cpus", str(10**12)], ("--num-cpus",)),
        (["--max-concurrent", "0"], ("--max-concurrent",)), (["--max-concurrent", "-3"], ("--max-concurrent",)),
        (["--max-concurrent", str(10**30)], ("--max-concurrent",)),
        (["--num-samples", "0"], ("--num-samples",)), (["--num-samples", "-2"], ("--num-samples",)),
        (["--gpus-per-trial", "-1"], ("--gpus-per-trial",)), (["--gpus-per-trial", "1.5"], ("--gpus-per-trial",)),
        (["--gpus-per-trial", "1e6"], ("--gpus-per-trial",)),
        (["--address", "nonsense"], ("--address",)), (["--address", "http://example.com"], ("--address",)),
        (["--address", "127.0.0.1:99999"], ("--address",)), (["--address", "127.0.0.1:"], ("--address",)),
        (["--address", ":6379"], ("--address",)), (["--address", "a b:6379"], ("--address",)),
        (["--address", ""], ("--address",)), (["--address", "ray://"], ("--address",)),
        (["--temp-dir", "/tmp/" + "t" * 150], ("--temp-dir",)), (["--temp-dir", "/tmp/" + "u" * 70], ("--temp-dir",)),
        (["--temp-dir", "{dir}/afile/sub"], ("--temp-dir",)), (["--temp-dir", ""], ("--temp-dir",)),
        (["--results", ""], ("--results",)), (["--results", "http://example.com/r"], ("--results",)),
        (["--results", "ftp://example.com/r"], ("--results",)), (["--results", "gs:/x"], ("--results",)),
        (["--results", "{dir}/afile"], ("--results",)), (["--results", "{dir}/afile/sub"], ("--results",)),
        (["--results", "/proc/1/nope"], ("--results",)), (["--results", "s3://"], ("--results",)),
        (["--name", "n" * 300], ("--name",)), (["--name", ""], ("--name",)), (["--name", ".."], ("--name",)),
        (["--name", "a/b"], ("--name",)), (["--name", "a\x01b"], ("--name",)), (["--name", "-x"], ("--name",)),
        (["--name", " "], ("--name",)), (["--name", "x" * 120], ("--name",)),
        (["--set", "=3"], ("--set",)), (["--set", "k_max"], ("--set",)), (["--set", "nokey=1"], ("nokey",)),
        (["--set", "kernel=[unclosed"], ("kernel",)), (["--verbose", "5"], ("--verbose",)),
        (["--num-cpus", "two"], ("--num-cpus",)), (["--resume", "--overwrite"], ("--resume", "--overwrite")),
        (["--no-such-flag"], ("--no-such-flag",)),
    ]
    for extra, needles in flag_cases:
        cases.append(Case("flags", " ".join(extra)[:60], ["{dir}/space.yaml", *extra], dict(space), needles))
    for key in str_keys:
        cases.append(Case("flags", f"--set {key}=<300 chars>", ["{dir}/space.yaml", "--set", f"{key}={'z' * 300}"],
                          dict(space), (key,)))

    # 4. YAML: alias bombs, depth, encodings, keys
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    last = chr(98 + 7)
    for where in ("description", "base.kernel", "axes.seed", "variants", "name", "scheduler"):
        lines = ["x_bomb:", *("  " + ln for ln in bomb.splitlines())]
        ref = f"*{last}"
        doc_text = {
            "description": f"name: fz\ndescription: {ref}\n",
            "base.kernel": f"name: fz\nbase:\n  kernel: {ref}\n",
            "axes.seed": f"name: fz\naxes:\n  seed: {ref}\n",
            "variants": f"name: fz\nvariants: {ref}\n",
            "name": f"name: {ref}\n",
            "scheduler": f"name: fz\nscheduler: {{asha: {ref}}}\n",
        }[where]
        raw = ("\n".join(lines) + "\n" + doc_text).encode()
        cases.append(_space_case("yaml", f"alias bomb in {where}", None, ("alias", "x_bomb", "expands"), raw=raw))
    inline_bomb = "[" + ", ".join(["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]) + "]"
    for key in ("bandwidth_scales", "kernel", "k_max"):
        cases.append(Case("yaml", f"alias bomb in --set {key}", ["{dir}/space.yaml", "--set", f"{key}={inline_bomb}"],
                          dict(space), ("alias", "expands", key)))
    cases.append(Case("yaml", "--set value of 100 KiB", ["{dir}/space.yaml", "--set", "target_path=" + "p" * 102400],
                      dict(space), ("bytes",)))
    for depth in (60, 1000, 5000):
        nested = "[" * depth + "]" * depth
        cases.append(_space_case("yaml", f"{depth}-deep list", None, ("deep", "nest"),
                                 raw=f"name: fz\ndescription: {nested}\n".encode()))
        cases.append(Case("yaml", f"{depth}-deep --set", ["{dir}/space.yaml", "--set", f"bandwidth_scales={nested}"],
                          dict(space), ("deep", "nest")))
        nested_map = "".join("  " * i + f"k{i}:\n" for i in range(min(depth, 400))) + "  " * min(depth, 400) + "x: 1\n"
        cases.append(_space_case("yaml", f"{min(depth, 400)}-deep mapping", None, ("deep", "nest"),
                                 raw=("name: fz\nbase:\n" + "".join("  " + ln + "\n"
                                                                    for ln in nested_map.splitlines())).encode()))
    for label, raw in [
        ("latin-1 bytes", "name: fz\ndescription: caf\xe9\n".encode("latin-1")),
        ("utf-16", "name: fz\n".encode("utf-16")),
        ("random binary", bytes(rng.randrange(256) for _ in range(512))),
        ("NUL bytes", b"name: fz\x00\x00\nbase: {}\n"),
        ("a PNG header", b"\x89PNG\r\n\x1a\n" + bytes(64)),
        ("gzip", b"\x1f\x8b\x08\x00" + bytes(40)),
    ]:
        cases.append(_space_case("yaml", label, None, ("UTF-8", "binary", "text", "YAML"), raw=raw))
    cases.append(_space_case("yaml", "a 3 MB file", None, ("bytes", "large", "MiB", "KiB"),
                             raw=b"name: fz\ndescription: " + b"y" * (3 * 2**20) + b"\n"))
    for label, text, needles in [
        ("int key at top level", "name: fz\n1: 2\n", ("key",)),
        ("int key in base", "name: fz\nbase: {1: 2}\n", ("key",)),
        ("float key in axes", "name: fz\naxes: {1.5: [1, 2]}\n", ("key",)),
        ("null key", "name: fz\nbase: {~: 2}\n", ("key",)),
        ("bool key", "name: fz\nbase: {true: 2}\n", ("key",)),
        ("list key", "name: fz\nbase: {? [a, b] : 2}\n", ("key",)),
        ("mapping key", "name: fz\n? {a: 1}\n: 2\n", ("key",)),
        ("int key in variant", "name: fz\nvariants: [{name: v, 3: 4}]\n", ("key",)),
        ("int key in scheduler", "name: fz\nscheduler: {asha: {1: 2}}\n", ("key",)),
        ("int key in resources", "name: fz\nresources: {1: 2}\n", ("key",)),
        ("dup top-level key", "name: fz\nname: fz2\n", ("duplicate", "name")),
        ("dup base key", "name: fz\nbase: {k_max: 2, k_max: 3}\n", ("duplicate", "k_max")),
        ("dup axes key", "name: fz\naxes:\n  seed: [0]\n  seed: [1]\n", ("duplicate", "seed")),
        ("dup variant key", "name: fz\nvariants: [{name: a, rate: 1, rate: 2}]\n", ("duplicate", "rate")),
        ("dup resources key", "name: fz\nresources: {cpu: 1, cpu: 2}\n", ("duplicate", "cpu")),
        ("merge key bomb", "name: fz\nbase: &b {k_max: 2}\nvariants: [{<<: *b, name: v, <<: *b}]\n",
         ("duplicate", "<<", "merge")),
        ("python tag", "name: !!python/object:os.system fz\n", ("YAML", "tag")),
        ("set tag", "name: fz\nbase: !!set {a, b}\n", ("base",)),
        ("binary tag", "name: fz\ndescription: !!binary aGVsbG8=\n", ("description",)),
        ("timestamp name", "name: 2020-01-01\n", ("name",)),
        ("empty file", "", ("mapping",)),
        ("a list", "- name: fz\n", ("mapping",)),
        ("a scalar", "just text\n", ("mapping",)),
        ("two documents", "name: fz\n---\nname: fz2\n", ("document", "YAML")),
        ("tab indentation", "name: fz\nbase:\n\tk_max: 2\n", ("YAML",)),
        ("unclosed bracket", "name: fz\naxes: {seed: [0, 1}\n", ("YAML",)),
    ]:
        cases.append(_space_case("yaml", label, None, needles, raw=text.encode()))
    cases.append(Case("yaml", "space is a folder", ["{dir}/folder.yaml"], {"folder.yaml/x": b""}, ("folder",)))
    cases.append(Case("yaml", "space is unreadable", ["/proc/self/mem.yaml"], {}, ("mem.yaml",)))

    # 5. types and the smaller ones
    for key in float_keys + int_keys + str_keys:
        bad = rng.choice([[1, 2], {"a": 1}, "text" if key not in str_keys else 12, True if key not in str_keys else 1.5])
        cases.append(_space_case("types", f"base.{key}={bad!r}", _space_doc(base={**BASE, key: bad}), (key,)))
    for key, bad in [("description", [1, 2]), ("description", {"a": 1}), ("description", 12),
                     ("description", "d" * 20000), ("name", "n" * 300), ("name", "a b"), ("name", 12),
                     ("search", ["grid"]), ("metric", 1), ("mode", None), ("num_samples", 1.5),
                     ("num_samples", True), ("seed", -1), ("seed", "0"), ("max_failures", -1),
                     ("max_failures", 10**6), ("max_concurrent", 0), ("resources", [1]),
                     ("resources", {"cpu": -1}), ("resources", {"cpu": "1"}), ("resources", {"cpu": 10**6}),
                     ("resources", {"gpu": 10**6}), ("resources", {"tpu": 1}), ("resources", {"cpu": True}),
                     ("scheduler", {"asha": {"reduction_factor": 1}}), ("scheduler", {"asha": {"grace_period": 0}}),
                     ("scheduler", {"asha": {"reduction_factor": 10**6}}), ("scheduler", {"asha": [1]}),
                     ("scheduler", {"asha": {"reduction_factor": True}}),
                     ("base", [1]), ("axes", [1]), ("variants", {"a": 1}), ("variants", [{"name": ""}]),
                     ("variants", [{"name": 3}]), ("variants", [{"name": "v" * 300}])]:
        cases.append(_space_case("types", f"{key}={str(bad)[:40]}", _space_doc(**{key: bad}), (key,)))
    axis_key = next(k for k in str_keys if k in ("kernel", "operator", "schedule"))
    cases.append(_space_case("types", "misspelt base key under an axis",
                             _space_doc(base={**BASE, axis_key: "gausian-typo"}, axes={axis_key: ["gaussian"]}
                                        if axis_key == "kernel" else {axis_key: ["constant"]}),
                             (axis_key, "gausian-typo")))
    for key in int_keys:
        cases.append(_space_case("types", f"axes.{key}=[1, 1.5]", _space_doc(axes={key: [2, 1.5]}), (key,)))
    return cases


# ---- running one case ---------------------------------------------------------------------------------

class _RayWouldStart(Exception):
    """Raised instead of connecting to Ray: the input got past validation."""


class _Timeout(BaseException):
    pass


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def on_alarm(signum, frame):  # noqa: ANN001
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


OUTCOMES = ("ok", "accepted", "traceback", "hang", "not_one_line", "wrong_status", "unnamed")


def _ray_entry(run_module: Any) -> Any:
    """The module whose `connect` joins or starts Ray: drift_sweeps.tune.session (before the sweep package:
    the CLI module itself)."""
    try:
        return importlib.import_module("drift_sweeps.tune.session")
    except ImportError:
        return run_module


def run_case(case: Case, folder: Path, run_module: Any) -> tuple[str, str, float]:
    """Run one case through `run_module.main` in this process; (outcome, detail, seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "afile").write_text("not a folder")
    for name, data in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    argv = [a.replace("{dir}", str(folder)) for a in case.argv]
    if not any(a == "--results" for a in argv):
        argv += ["--results", str(folder / "res")]
    out, err = io.StringIO(), io.StringIO()
    ray_entry = _ray_entry(run_module)
    real_connect = getattr(ray_entry, "connect")

    def refuse(*a: Any, **k: Any) -> None:
        raise _RayWouldStart()

    setattr(ray_entry, "connect", refuse)
    start = time.monotonic()
    outcome, detail = "ok", ""
    try:
        with _alarm(CASE_LIMIT_S), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = run_module.main(argv)
            except SystemExit as exit_:
                rc = exit_.code if isinstance(exit_.code, int) else 2
    except _Timeout:
        outcome, detail = "hang", f"over {CASE_LIMIT_S:g} s"
    except _RayWouldStart:
        outcome, detail = "accepted", "validation passed; Ray would start"
    except RecursionError as e:
        outcome, detail = "traceback", f"RecursionError: {str(e)[:200]}"
    except Exception as e:  # noqa: BLE001
        outcome, detail = "traceback", "".join(traceback.format_exception_only(type(e), e)).strip()[:300]
    else:
        text = err.getvalue().strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if rc == 0:
            outcome, detail = "accepted", "exit 0"
        elif "Traceback" in text:
            outcome, detail = "traceback", text[-300:]
        elif rc != 2:
            outcome, detail = "wrong_status", f"exit {rc}: {text[:200]}"
        elif len(lines) != 1:
            outcome, detail = "not_one_line", text[:300]
        elif case.needles and not any(n.lower() in lines[0].lower() for n in case.needles):
            outcome, detail = "unnamed", lines[0][:300]
        else:
            detail = lines[0]
    finally:
        setattr(ray_entry, "connect", real_connect)
    return outcome, detail, time.monotonic() - start


def run_all(cases: list[Case], run_module: Any, progress: Optional[Callable[[int, Case, str], None]] = None
            ) -> list[tuple[Case, str, str, float]]:
    """Run every case in a temporary folder of its own; returns (case, outcome, detail, seconds)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="fz") as tmp:
        for i, case in enumerate(cases):
            outcome, detail, secs = run_case(case, Path(tmp) / f"c{i}", run_module)
            out.append((case, outcome, detail, secs))
            if progress:
                progress(i, case, outcome)
    return out


def summarise(rows: list[tuple[Case, str, str, float]]) -> dict[str, dict[str, int]]:
    """class -> outcome -> count."""
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case, outcome, _, _ in rows:
        table[case.cls][outcome] += 1
        table["ALL"][outcome] += 1
    return {cls: dict(c) for cls, c in table.items()}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkout", default=str(Path(__file__).resolve().parent.parent),
                   help="repository checkout whose drift_sweeps is run (default: this one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", default="", help="print the details of these outcomes (comma-separated)")
    args = p.parse_args(argv)
    sys.path.insert(0, args.checkout)
    os.environ["DRIFT_SWEEPS_SPACES"] = str(Path(args.checkout) / "search_spaces")
    import drift_sweeps.run as run_module

    print(f"drift_sweeps from {Path(run_module.__file__).resolve().parent}", file=sys.stderr)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    cases = generate(args.seed)
    rows = run_all(cases, run_module)
    summary = summarise(rows)
    print(json.dumps({"cases": len(cases), "by_class": summary}, indent=1, sort_keys=True))
    show = set(filter(None, args.show.split(",")))
    for case, outcome, detail, secs in rows:
        if outcome in show:
            print(f"{outcome:12s} {case.cls:10s} {case.label[:50]:50s} {secs:5.1f}s {detail[:160]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
