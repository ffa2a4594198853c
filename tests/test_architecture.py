"""The house's layers, checked on the import graph: no cycles; the spine imports the standard library only;
analysis/ never reaches torch, ray or the sweep runner; core/ imports torch, the standard library and the spine;
and no module or function grows past the size limits (a ratchet: the list of known exceptions only shrinks)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)
FORBIDDEN = {"torch", "ray"}
ANALYSIS_THIRD_PARTY = {"numpy", "pandas", "pyarrow", "scipy", "matplotlib", "seaborn", "statsmodels", "lmfit",
                        "optuna", "plotly"}  # optuna: fANOVA importances; plotly: report.html
# what analysis/ may use of drift_sweeps: the torch-free spine and the results store (the Parquet schema)
ANALYSIS_MAY_USE_PREFIXES = ("drift_sweeps.spine", "drift_sweeps.results")
CORE_LAZY = {"numpy", "pyarrow", "scipy", "sklearn", "finufft", "numba"}  # only inside functions (file target, digits, NUFFT, near field)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, inside a function?) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, nested) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.append((mod, nested))
                for alias in child.names:  # `from pkg import submodule`
                    if module_file(f"{mod}.{alias.name}") is not None:
                        found.append((f"{mod}.{alias.name}", nested))
            visit(child, inner)

    visit(tree, False)
    return found


def in_repo(name: str) -> bool:
    return name.split(".")[0] in {"analysis", "drift_sweeps"} and module_file(name) is not None


def with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def reachable_from(start: list[str]) -> tuple[set[str], dict[str, set[str]]]:
    """In-repo modules reachable from `start` (package __init__s included) and the external imports of each."""
    seen: set[str] = set()
    external: dict[str, set[str]] = {}
    todo = [m for s in start for m in with_parents(s)]
    while todo:
        mod = todo.pop()
        if mod in seen or module_file(mod) is None:
            continue
        seen.add(mod)
        for name, _ in imports_of(module_file(mod)):
            if in_repo(name):
                todo.extend(with_parents(name))
            else:
                external.setdefault(mod, set()).add(name.split(".")[0])
    return seen, external


ANALYSIS_MODULES = sorted(module_name(p) for p in (ROOT / "analysis").rglob("*.py"))
CORE_FILES = sorted((ROOT / "drift_sweeps" / "core").glob("*.py"))


def test_there_is_something_to_check():
    assert {"analysis.load", "analysis.fits", "analysis.report", "analysis.headline",
            "analysis.plots.scaling"} <= set(ANALYSIS_MODULES)  # subpackages too
    assert any(p.name == "kernels.py" for p in CORE_FILES)


def test_analysis_never_reaches_torch_or_ray():
    seen, external = reachable_from(ANALYSIS_MODULES)
    bad = {mod: sorted(ext & FORBIDDEN) for mod, ext in external.items() if ext & FORBIDDEN}
    assert not bad, f"torch/ray reachable from analysis/ through: {bad}"
    drift = {m for m in seen if m.startswith("drift_sweeps")} - {"drift_sweeps"}
    extra = {m for m in drift if not m.startswith(ANALYSIS_MAY_USE_PREFIXES)}
    assert not extra, f"analysis/ reaches drift_sweeps modules outside the torch-free spine: {extra}"


def test_analysis_uses_only_the_scientific_python_stack():
    for mod in ANALYSIS_MODULES:
        for name, _ in imports_of(module_file(mod)):
            root = name.split(".")[0]
            assert root in STDLIB or root in ANALYSIS_THIRD_PARTY or in_repo(name), f"{mod} imports {name}"


def test_core_imports_torch_and_stdlib_only():
    for path in CORE_FILES:
        for name, nested in imports_of(path):
            root = name.split(".")[0]
            if name.startswith("drift_sweeps."):
                assert name.startswith(("drift_sweeps.core", "drift_sweeps.spine")), \
                    f"{path.name} imports {name} from outside core and the spine"
                continue
            allowed = STDLIB | {"torch"} | (CORE_LAZY if nested else set())
            assert root in allowed, f"core/{path.name} imports {name}" + ("" if nested else " at module level")


SPINE_FILES = sorted((ROOT / "drift_sweeps" / "spine").glob("*.py"))


def test_spine_imports_the_standard_library_and_itself_only():
    assert len(SPINE_FILES) >= 6
    for path in SPINE_FILES:
        for name, _ in imports_of(path):
            ok = name.split(".")[0] in STDLIB or name.startswith("drift_sweeps.spine")
            assert ok, f"spine/{path.name} imports {name}"


ALL_MODULES = sorted(module_name(p) for top in ("drift_sweeps", "analysis") for p in (ROOT / top).rglob("*.py"))


def import_graph() -> dict[str, set[str]]:
    """module -> the in-repo modules it imports (at module level or inside functions; packages' __init__ left out)."""
    graph: dict[str, set[str]] = {}
    for mod in ALL_MODULES:
        targets = {name for name, _ in imports_of(module_file(mod)) if in_repo(name)}
        graph[mod] = {t for t in targets if t != mod and not module_file(t).name == "__init__.py"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules, or [] (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert len(ALL_MODULES) > 40
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
# Known exceptions, to be split; the list may only shrink (a new entry fails the test).
OVERSIZE_MODULES: set[str] = set()
OVERSIZE_FUNCTIONS: set[str] = set()


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [f"{module_name(path)}:{node.name}" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_module_and_function_sizes_only_shrink():
    files = [p for top in ("drift_sweeps", "analysis") for p in (ROOT / top).rglob("*.py")]
    big = {module_name(p) for p in files if len(p.read_text().splitlines()) > MAX_MODULE_LINES}
    assert big <= OVERSIZE_MODULES, f"modules over {MAX_MODULE_LINES} lines: {sorted(big - OVERSIZE_MODULES)}"
    long = {f for p in files for f in _long_functions(p)}
    assert long <= OVERSIZE_FUNCTIONS, f"functions over {MAX_FUNCTION_LINES} lines: {sorted(long - OVERSIZE_FUNCTIONS)}"


def test_importing_every_analysis_module_loads_no_torch_or_ray():
    code = ("import sys\nimport analysis.headline\n"  # the sweep CLI imports this one: keep it light
            + "heavy = sorted(m for m in ('scipy', 'matplotlib', 'seaborn') if m in sys.modules)\n"
            + "assert not heavy, f'analysis.headline pulls in {heavy}'\n"
            + "".join(f"import {m}\n" for m in ANALYSIS_MODULES)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))\n"
            + "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# the driver's side of a sweep: what the CLI, the runners and Tune's callbacks import on the driver
DRIVER_MODULES = ("drift_sweeps.run", "drift_sweeps.sweep.cli", "drift_sweeps.sweep.driver",
                  "drift_sweeps.sweep.tune_runner", "drift_sweeps.sweep.memory_check", "drift_sweeps.tune.adapter",
                  "drift_sweeps.tune.writer", "drift_sweeps.tune.pack_writer", "drift_sweeps.tune.progress",
                  "drift_sweeps.tune.live")


def test_the_driver_never_imports_torch(tmp_path):
    """Torch is the trials' (2 s and ~150 MB of a driver's start otherwise): the driver's modules, its
    provenance record and the TensorBoard writers (tensorboardX imports torch when it can) leave it out."""
    code = ("import sys, types\n" + "".join(f"import {m}\n" for m in DRIVER_MODULES)
            + "from drift_sweeps.sweep.provenance import driver_versions\nimport json\n"
            + "assert json.loads(driver_versions())['torch']\n"
            + "from drift_sweeps.tune import live, ray_compat\nray_compat.tensorboardx_without_torch()\n"
            + f"w = live.TensorBoardWriter({str(tmp_path)!r}, ['loss'])\n"
            + "trial = types.SimpleNamespace(trial_id='t1', config={'seed': 0})\n"
            + "w.on_trial_result(0, [], trial, {'step': 1, 'loss': 0.5})\nassert not w.failed\n"
            + "from ray.tune.logger import TBXLoggerCallback\nTBXLoggerCallback()\nimport tensorboardX\n"
            + "assert 'torch' not in sys.modules, 'torch imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(tmp_path.glob("t1/events*")), "no TensorBoard event file"
